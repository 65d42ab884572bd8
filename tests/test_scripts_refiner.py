"""scripts/train_refiner.py on the small test model: pairs are made and kept in shards, the
refiner trains, a rerun resumes instead of starting over, and the model folder it writes
loads with its refiner."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from script_helpers import load_script

from uare.model.refiner import FILENAME
from uare.pipeline import UARE

from test_pipeline import save_test_model


@pytest.fixture(scope="module")
def script():
    return load_script("scripts/train_refiner.py")


def test_pairs_training_resume_and_the_model_folder(script, tmp_path, astronaut):
    torch.set_num_threads(1)
    model = save_test_model(tmp_path / "model")
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, (y, x) in enumerate(((0, 0), (200, 250))):
        Image.fromarray(astronaut[y:y + 96, x:x + 120]).save(photos / f"p{i}.png")
    out = tmp_path / "run"
    args = ["--model", str(model), "--data", str(photos), "-o", str(out), "--batches", "2", "--shard", "1",
            "--minutes", "0.03", "--channels", "8", "--blocks", "1", "--threads", "1"]
    assert script.main(args) == 0
    shards = sorted((out / "pairs").glob("shard-*.safetensors"))
    assert len(shards) == 2
    with safe_open(str(shards[0]), "pt") as f:
        meta = f.metadata()
        assert f.get_slice("clean").get_shape() == [8, 64, 64, 3]   # the test model's 64 px tile
    assert len(json.loads(meta["presets"])) == len(json.loads(meta["removed"])) == 8
    first = json.loads((out / "train" / "state.json").read_text())["step"]
    assert first > 0
    stamps = [s.stat().st_mtime_ns for s in shards]
    # a rerun with a longer time box keeps the pairs and goes on from the saved step
    assert script.main(args[:-8] + ["--minutes", "0.06"] + args[-6:]) == 0
    assert [s.stat().st_mtime_ns for s in shards] == stamps
    assert json.loads((out / "train" / "state.json").read_text())["step"] > first
    table = (out / "val.md").read_text()
    assert "| all |" in table and "refined" in table
    pipe = UARE.from_pretrained(out / "model", device="cpu")
    assert pipe.refiner is not None and (out / "model" / FILENAME).exists()
    img = np.asarray(Image.open(photos / "p0.png"))[:64, :64]
    assert pipe.restore(img, task="dejpeg").image.size == (64, 64)
    # another shape into the same run folder is refused, not mixed in
    with pytest.raises(SystemExit, match="another shape"):
        script.main(args[:-6] + ["--channels", "16", "--blocks", "1", "--threads", "1"])


def test_darkened_crops_and_a_start_from_the_models_refiner(script, tmp_path, astronaut):
    torch.set_num_threads(1)
    model = save_test_model(tmp_path / "model")
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(astronaut[:96, :120]).save(photos / "p0.png")
    first = tmp_path / "first"
    common = ["--data", str(photos), "--batches", "2", "--shard", "1", "--minutes", "0.02",
              "--channels", "8", "--blocks", "1", "--threads", "1"]
    assert script.main(["--model", str(model), "-o", str(first), "--no-gate", "--dark", "1"] + common) == 0
    with safe_open(str(first / "pairs" / "shard-0000.safetensors"), "pt") as f:
        gains, clean = json.loads(f.metadata()["gains"]), f.get_tensor("clean")
    lo, hi = script.DARK_GAINS
    assert len(gains) == 8 and all(lo <= g <= hi for g in gains)
    assert int(clean.max()) <= hi * 255 + 1   # every crop darkened before degrading
    # a gated refiner starts from the first run's (no gate) and reports it next to its own
    second = tmp_path / "second"
    assert script.main(["--model", str(first / "model"), "--init", str(first / "model"), "-o", str(second),
                        "--dark", "0"] + common) == 0
    assert "init" in (second / "val.md").read_text()
    assert UARE.from_pretrained(second / "model", device="cpu").refiner.cfg.gate
    with pytest.raises(SystemExit, match="no refiner.safetensors"):
        script.main(["--model", str(model), "--init", str(model), "-o", str(tmp_path / "x")] + common)


def test_jobs_never_remove_a_skipped_type_but_keep_plain_mixes_with_it(script):
    import random

    from uare.pipeline import removed_types
    rng = random.Random(0)
    jobs = [script.draw_job(rng, ("lowlight",)) for _ in range(400)]
    assert not any("lowlight" in removed_types(task, types) for _, task, types in jobs)
    assert any("lowlight" in preset and types is None for preset, _, types in jobs)   # "mix-degraded"
    kinds = {preset.split(":")[0] for preset, _, _ in jobs}
    assert kinds == {"single", "multi", "realesrgan"}
