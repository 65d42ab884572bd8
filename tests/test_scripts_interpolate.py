"""scripts/interpolate_weights.py on made-up model folders."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from script_helpers import load_script


@pytest.fixture(scope="module")
def script():
    return load_script("scripts/interpolate_weights.py")


def _folder(root: Path, name: str, tensors: dict, config: dict | None = None) -> Path:
    d = root / name
    d.mkdir()
    save_file(tensors, str(d / "model.safetensors"))
    (d / "config.json").write_text(json.dumps(config or {"preset": "tiny"}))
    (d / "tokenizer.json").write_text('{"model": "bpe"}')
    (d / "inference.json").write_text(json.dumps({"steps": 4 if name == "a" else 8}))
    return d


def test_the_line_between_two_folders(script, tmp_path):
    a = {"w": torch.zeros(2, 3), "b": torch.tensor([1.0, 2.0]).half(), "n": torch.tensor([7])}
    b = {"w": torch.full((2, 3), 4.0), "b": torch.tensor([3.0, 6.0]).half(), "n": torch.tensor([7])}
    fa, fb = _folder(tmp_path, "a", a), _folder(tmp_path, "b", b)
    for alpha, w in ((0.0, 0.0), (0.25, 1.0), (1.0, 4.0)):
        out = tmp_path / f"out-{alpha}"
        assert script.main([str(fa), str(fb), "--alpha", str(alpha), "-o", str(out)]) == 0
        got = load_file(str(out / "model.safetensors"))
        assert torch.equal(got["w"], torch.full((2, 3), w))
        assert got["b"].dtype == torch.float16 and torch.equal(got["n"], a["n"])
        # everything but the weights is A's, settings included
        assert json.loads((out / "inference.json").read_text()) == {"steps": 4}
        assert not list(out.glob("*.part"))
    assert torch.equal(load_file(str(tmp_path / "out-0.25" / "model.safetensors"))["b"],
                       torch.tensor([1.5, 3.0]).half())


def test_folders_of_two_lineages_are_refused(script, tmp_path, capsys):
    t = {"w": torch.zeros(2)}
    fa = _folder(tmp_path, "a", t)
    other_config = _folder(tmp_path, "c", t, config={"preset": "bagel-7b"})
    assert script.main([str(fa), str(other_config), "--alpha", "0.5", "-o", str(tmp_path / "o1")]) == 2
    assert "config.json differs" in capsys.readouterr().err
    other_shape = _folder(tmp_path, "s", {"w": torch.zeros(3)})
    assert script.main([str(fa), str(other_shape), "--alpha", "0.5", "-o", str(tmp_path / "o2")]) == 2
    assert "w: (2,)" in capsys.readouterr().err
    other_keys = _folder(tmp_path, "k", {"v": torch.zeros(2)})
    assert script.main([str(fa), str(other_keys), "--alpha", "0.5", "-o", str(tmp_path / "o3")]) == 2
    assert "different tensors" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        script.main([str(fa), str(fa), "--alpha", "1.5", "-o", str(tmp_path / "o4")])
    with pytest.raises(SystemExit):
        script.main([str(fa), str(other_config), "--alpha", "0.5", "-o", str(fa)])
