"""scripts/device/{prepare,collect}.py and scripts/pretrain_vit.py on a micro model."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from script_helpers import load_script
from train_helpers import micro_config
from uare.model import UAREModel, build_model

SCRIPTS = Path(__file__).parents[1] / "scripts"


def _load(rel: str):
    return load_script(f"scripts/{rel}")


@pytest.fixture
def micro_folder(tmp_path):
    torch.manual_seed(0)
    m = build_model(micro_config())
    folder = tmp_path / "model"
    m.save_pretrained(folder)
    return folder


def _photos(tmp_path, small_photo, n=2):
    d = tmp_path / "train" / "set"
    d.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(np.ascontiguousarray(np.roll(small_photo, 11 * i, axis=1))).save(d / f"{i}.png")
    return tmp_path / "train"


def test_prepare_then_collect_round_trips_the_model(tmp_path, small_photo, micro_folder):
    data = _photos(tmp_path, small_photo)
    man = tmp_path / "manifests"
    man.mkdir()
    lines = [{"image": str(p), "kind": "single", "preset": "single:noise", "seed": 1}
             for p in sorted(data.rglob("*.png"))]
    (man / "manifest-single.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    out = tmp_path / "gpu"
    assert _load("device/prepare.py").main(["--init", str(micro_folder), "--data", str(data),
                                            "--manifests", str(man), "-o", str(out)]) == 0
    moved = [json.loads(x) for x in (out / "tiny-data" / "manifest-single.jsonl").read_text().splitlines()]
    assert all(Path(x["image"]).suffix == ".jpg" and Path(x["image"]).exists() for x in moved)
    half = load_file(str(out / "init" / "model.safetensors"))
    assert all(v.dtype == torch.float16 for v in half.values() if v.is_floating_point())

    # run.sh: widen the carry to float32, train (here: nothing), pack the export in shards
    shards = _load("device/shards.py")
    work = tmp_path / "work"
    assert shards.main(["widen", str(out / "init"), str(work / "init")]) == 0
    wide = load_file(str(work / "init" / "model.safetensors"))
    assert set(wide) == set(half)
    assert all(v.dtype == torch.float32 and torch.equal(v, half[k].float())
               for k, v in wide.items() if v.is_floating_point())
    sd = load_file(str(micro_folder / "model.safetensors"))
    back = tmp_path / "back"
    limit = sum(v.numel() * v.element_size() for v in sd.values()) // 3
    notes = shards.pack(micro_folder, tmp_path / "no-ae", back, limit=limit)
    n = len(list(back.glob("model-*.safetensors")))
    assert n >= 3 and notes == [f"model: {n} shards"]
    assert not (back / "ae.safetensors").exists()
    assert shards.pack(tmp_path / "no-export", micro_folder, tmp_path / "ae-only")[0] == "no stage-2 export"
    assert (tmp_path / "ae-only" / "ae.safetensors").exists()
    keys = sorted(sd)
    collect = _load("device/collect.py")
    assert collect.main([str(back), "--init", str(micro_folder), "-o", str(tmp_path / "rebuilt")]) == 0
    again = load_file(str(tmp_path / "rebuilt" / "model.safetensors"))
    assert set(again) == set(sd) and all(torch.equal(again[k], sd[k]) for k in sd)
    UAREModel.from_pretrained(tmp_path / "rebuilt")

    # a job that trained one tensor of the widened float16 carry: that tensor comes back
    # as trained, every other one as the init's own float32 value, not its float16 rounding
    trained = {k: v.clone() for k, v in wide.items()}
    moved_key = next(k for k in keys if wide[k].is_floating_point() and wide[k].numel() > 1)
    trained[moved_key] += 0.5
    (tmp_path / "job").mkdir()
    save_file(trained, str(tmp_path / "job" / "model.safetensors"))
    shutil.copy2(micro_folder / "config.json", tmp_path / "job" / "config.json")
    shards.pack(tmp_path / "job", tmp_path / "no-ae", tmp_path / "back16", limit=limit)
    assert collect.main([str(tmp_path / "back16"), "--init", str(micro_folder), "-o", str(tmp_path / "r16")]) == 0
    r16 = load_file(str(tmp_path / "r16" / "model.safetensors"))
    assert torch.equal(r16[moved_key], trained[moved_key])
    assert all(torch.equal(r16[k], sd[k]) for k in keys if k != moved_key)
    assert any(not torch.equal(wide[k], sd[k]) for k in keys)   # the carry did round something
    save_file({keys[0]: sd[keys[0]]}, str(back / f"model-{n:02d}.safetensors"))   # one more, repeating
    with pytest.raises(SystemExit, match="repeats"):
        collect.main([str(back), "--init", str(micro_folder), "-o", str(tmp_path / "bad")])


def test_pretrain_vit_batches_do_not_depend_on_the_workers(tmp_path, small_photo, micro_folder):
    """Each step's batch is a function of its seed: 2 worker processes train the same ViT."""
    data = _photos(tmp_path, small_photo)
    outs = []
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SCRIPTS.parent / "src")}
    for w in ("0", "2"):
        outs.append(tmp_path / f"vit{w}")
        args = ["--model", str(micro_folder), "-o", str(outs[-1]), "--data", str(data), "--minutes", "5",
                "--steps", "3", "--batch", "4", "--crop", "32", "--heldout", "1", "--pairs", "0.5",
                "--quality", "1", "--workers", w, "--device", "cpu"]
        # as a script: spawned workers import the functions they run from the script itself
        subprocess.run([sys.executable, str(SCRIPTS / "pretrain_vit.py"), *args], env=env,
                       check=True, timeout=240, stdout=subprocess.DEVNULL)
        assert json.loads((outs[-1] / "vit_pretrain.json").read_text())["steps"] == 3
    a, b = (load_file(str(o / "model.safetensors")) for o in outs)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], v) for k, v in load_file(str(micro_folder / "model.safetensors")).items())


@pytest.mark.parametrize("pairs", [[], ["--pairs", "1.0", "--pair-types", "noise,jpeg"],
                                   ["--pairs", "0.5", "--pair-types", "noise,jpeg", "--quality", "1"],
                                   ["--view-scale", "2", "--crop", "16", "--check-crop", "24", "--grid-phase",
                                    "--rescale", "0.5", "--pairs", "0.5", "--pair-types", "noise,jpeg"]])
def test_pretrain_vit_changes_the_vit_and_nothing_else(tmp_path, small_photo, micro_folder, pairs):
    data = _photos(tmp_path, small_photo)
    out = tmp_path / "vit"
    args = ["--model", str(micro_folder), "-o", str(out), "--data", str(data), "--minutes", "0.002",
            "--batch", "4", "--crop", "32", "--heldout", "2", *pairs]
    assert _load("pretrain_vit.py").main(args) == 0
    before, after = load_file(str(micro_folder / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert set(before) == set(after)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("vit.") for k in changed)
    info = json.loads((out / "vit_pretrain.json").read_text())
    assert info["steps"] >= 1 and set(info["heldout_srcc"]) >= {"noise", "blur", "jpeg"}
    if "--pairs" in pairs:   # same-crop pairs: the within-photo ordering is measured per pair type
        assert set(info["within_photo_srcc"]) == {"noise", "jpeg"}
    assert (info["quality_within_photo_srcc"] is not None) == ("--quality" in pairs)
    view = 2 if "--view-scale" in pairs else 1   # saved in the model's config: every later use sees it
    assert info["view_scale"] == view and UAREModel.from_pretrained(out).cfg.vit.view_scale == view
    assert info["rescale"] == (0.5 if "--rescale" in pairs else 1.0)


def test_pretrain_vit_rescale_shrinks_larger_regions_to_the_crop():
    import random

    vit = _load("pretrain_vit.py")
    from image_helpers import ramp as ramp_array

    ramp = Image.fromarray(ramp_array())
    rng = random.Random(0)
    crops = [np.asarray(vit._region([ramp], rng, 24, phase=True, rescale=0.25)).astype(int) for _ in range(30)]
    assert all(c.shape == (32, 32, 3) for c in crops)        # 24 + the 8 px phase margin
    span = [c[0, -1, 0] - c[0, 0, 0] for c in crops]
    assert min(span) >= 58 and max(span) > 120                # 31 px native, up to 127 cut
    native = np.asarray(vit._region([ramp], random.Random(0), 24, phase=True)).astype(int)
    assert native[0, -1, 0] - native[0, 0, 0] == 62


def test_iqa_diagnostics_reports_the_vit_probe_and_the_reading_gap(tmp_path, small_photo):
    from test_pipeline import save_test_model

    folder = save_test_model(tmp_path / "model")
    data = _photos(tmp_path, small_photo)
    out = tmp_path / "report.json"
    args = ["--model", str(folder), "--data", str(data), "--crops", "6", "--samples", "3",
            "--side", "32", "-o", str(out)]
    assert _load("iqa_diagnostics.py").main(args) == 0
    r = json.loads(out.read_text())
    assert set(r["vit_probe_within_photo_srcc"]) == {"noise", "blur", "jpeg"}
    assert all(-1 <= v <= 1 for v in r["vit_probe_within_photo_srcc"].values())
    assert set(r["one_probe_within_photo_srcc"]) == {"noise", "blur", "jpeg"}
    assert set(r["probe_direction_cosine"]) == {"noise/blur", "noise/jpeg", "blur/jpeg"}
    assert all(-1 <= v <= 1 for v in r["probe_direction_cosine"].values())
    reading = r["reading"]
    assert reading["samples"] == 3 and reading["nll_own_image"] > 0
    assert reading["gap_nats"] == pytest.approx(reading["nll_other_image"] - reading["nll_own_image"], abs=2e-3)


def test_refiner_job_makes_pairs_then_trains_in_what_is_left(tmp_path, astronaut):
    """scripts/device/refiner.sh end to end on the CPU with the small test model: the
    photos-only prepare.py folder, pairs, a time-boxed training, the refiner file back."""
    from test_scripts_refiner import model_and_photos
    from uare.model.refiner import load_refiner

    model, src = model_and_photos(tmp_path, astronaut, ((0, 0), (200, 250)))
    gpu = tmp_path / "gpu"
    assert _load("device/prepare.py").main(["--data", str(src), "-o", str(gpu)]) == 0
    assert sorted(p.name for p in (gpu / "train").iterdir()) == ["p0.jpg", "p1.jpg"]
    assert not (gpu / "init").exists()
    with pytest.raises(SystemExit):   # half a run.sh folder is refused
        _load("device/prepare.py").main(["--data", str(src), "--init", str(model), "-o", str(tmp_path / "x")])
    out = tmp_path / "back"
    env = dict(os.environ, OUT=str(out), GPU_DIR=str(gpu), MODEL=str(model), WORK=str(tmp_path / "work"),
               MINUTES="0.05", PAIR_SHARE="20", BATCHES="2", BATCH="4", THREADS="1", DEVICE="cpu",
               PY=sys.executable)
    r = subprocess.run(["bash", str(SCRIPTS / "device" / "refiner.sh"), "--init", "", "--shard", "1",
                        "--channels", "8", "--blocks", "1"], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr + (out / "logs.txt").read_text()
    assert "pairs rc 0: 2 shards" in (out / "run.log").read_text()
    assert "| all |" in (out / "val.md").read_text()
    refiner = load_refiner(out)
    assert refiner is not None and refiner.cfg.channels == 8
    steps = json.loads((tmp_path / "work" / "train" / "state.json").read_text())["step"]
    assert steps > 0   # trained after the pairs, not the --minutes 0 run's step-0 state


def test_train_refiner_refuses_a_device_it_cannot_use(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(SystemExit, match="--device cuda: not usable here"):
        _load("train_refiner.py").main(["--model", "x", "--data", str(tmp_path), "-o", str(tmp_path / "o"),
                                        "--device", "cuda"])
