"""scripts/tone_bias.py on a made-up eval run folder."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from script_helpers import load_script


@pytest.fixture(scope="module")
def script():
    return load_script("scripts/tone_bias.py")


def _grey(path: Path, level: int, colour: tuple = (0, 0, 0)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    x = np.full((8, 8, 3), level, np.int16) + np.array(colour, np.int16)
    x[:4] += 10     # some contrast, the same in clean and outputs
    Image.fromarray(x.clip(0, 255).astype(np.uint8)).save(path)


def _run(tmp: Path) -> tuple[Path, Path]:
    hq, run = tmp / "hq", tmp / "run"
    lines = ["dataset,image,method,output,psnr,seconds"]
    for i, level in enumerate((100, 140)):
        _grey(hq / f"im{i}.png", level)
        for method, shift, colour in (("bright", 10, (0, 0, 0)), ("dark", -20, (6, 0, -6))):
            out = f"images/{method}/multi_lowlight_haze_im{i}.png"
            _grey(run / out, level + shift, colour)
            lines.append(f"d multi:lowlight+haze,multi:lowlight+haze/im{i},{method},{out},20.0,1.0")
    (run / "restore_per_image.csv").write_text("\n".join(lines) + "\n")
    return run, hq


def test_the_sign_and_size_of_the_tone_shift(script, tmp_path, capsys):
    run, hq = _run(tmp_path)
    rows = {r["method"]: r for r in script.bias(run, hq)}
    assert rows["bright"]["n"] == 2
    assert rows["bright"]["dY"] == pytest.approx(10.0, abs=0.01)
    assert rows["bright"]["dSat"] == pytest.approx(0.0, abs=0.01)
    assert rows["bright"]["dContrast"] == pytest.approx(0.0, abs=0.01)
    # -20 grey levels with red +6 and blue -6: Y moves by 0.299 x 6 - 0.114 x 6 = +1.11
    assert rows["dark"]["dY"] == pytest.approx(-18.89, abs=0.01) == -rows["dark"]["abs_dY"]
    assert rows["dark"]["dSat"] == pytest.approx(12.0, abs=0.01)
    assert script.main([str(run), "--hq", str(hq), "--preset", "lowlight+haze"]) == 0
    assert "| multi:lowlight+haze | bright | 2 | +10.0 | 10.0 | +0.0 | +0.0 |" in capsys.readouterr().out


def test_missing_clean_images_and_presets_are_named(script, tmp_path, capsys):
    run, hq = _run(tmp_path)
    (hq / "im1.png").unlink()
    assert script.main([str(run), "--hq", str(hq)]) == 2
    assert "no clean image named 'im1'" in capsys.readouterr().err
    assert script.main([str(run), "--hq", str(hq), "--preset", "single:haze"]) == 2
    assert "no images of preset 'single:haze'" in capsys.readouterr().err
    assert script.main([str(tmp_path), "--hq", str(hq)]) == 2
    assert "no restore_per_image.csv" in capsys.readouterr().err
