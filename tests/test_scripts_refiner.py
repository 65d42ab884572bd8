"""scripts/train_refiner.py on the small test model: pairs are made and kept in shards, the
refiner trains, a rerun resumes instead of starting over, and the model folder it writes
loads with its refiner."""
from __future__ import annotations

import json
import math

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


def model_and_photos(tmp_path, astronaut, crops=((0, 0),)):
    """The small test model and a folder of 96x120 crops of the astronaut photo."""
    torch.set_num_threads(1)
    model = save_test_model(tmp_path / "model")
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, (y, x) in enumerate(crops):
        Image.fromarray(astronaut[y:y + 96, x:x + 120]).save(photos / f"p{i}.png")
    return model, photos


def test_pairs_training_resume_and_the_model_folder(script, tmp_path, astronaut):
    model, photos = model_and_photos(tmp_path, astronaut, ((0, 0), (200, 250)))
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
    # a time box for the pairs: none started after it, and none at all is an error
    with pytest.raises(SystemExit, match="no shards made"):
        script.main(["--model", str(model), "--data", str(photos), "-o", str(tmp_path / "boxed"),
                     "--batches", "2", "--shard", "1", "--pairs-minutes", "0", "--minutes", "0"])
    assert not list((tmp_path / "boxed" / "pairs").glob("shard-*"))


def test_darkened_crops_and_a_start_from_the_models_refiner(script, tmp_path, astronaut):
    model, photos = model_and_photos(tmp_path, astronaut)
    first = tmp_path / "first"
    common = ["--data", str(photos), "--batches", "2", "--shard", "1", "--minutes", "0.02",
              "--channels", "8", "--blocks", "1", "--threads", "1"]
    assert script.main(["--model", str(model), "-o", str(first), "--no-gate", "--dark", "1"] + common) == 0
    lo, hi = script.DARK_GAINS
    darkened = 0
    for shard in sorted((first / "pairs").glob("shard-*.safetensors")):
        with safe_open(str(shard), "pt") as f:
            meta, clean = f.metadata(), f.get_tensor("clean")
        gains, told = json.loads(meta["gains"]), json.loads(meta["removed"])
        assert len(gains) == 8 and meta["model"] == script.model_fingerprint(model)
        for g, t, c in zip(gains, told, clean):
            # every crop whose job names its types is darkened before degrading; the plain
            # mixed prompt's are not (dark there may be low light to brighten)
            assert (lo <= g <= hi and int(c.max()) <= hi * 255 + 1) if t else g == 1.0
            darkened += bool(t)
    assert darkened
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


def test_pairs_leave_out_dark_untold_crops_and_other_runs_shards_join(script, tmp_path, astronaut):
    model, photos = model_and_photos(tmp_path, astronaut)
    common = ["--model", str(model), "--data", str(photos), "--shard", "1", "--minutes", "0.01",
              "--channels", "8", "--blocks", "1", "--threads", "1"]
    first = tmp_path / "first"
    assert script.main(common + ["-o", str(first), "--batches", "1", "--loss", "psnr", "--camera", "0.5"]) == 0
    # an older run's shard: darkened crops under the plain mixed prompt (told nothing)
    shard = first / "pairs" / "shard-0000.safetensors"
    with safe_open(str(shard), "pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    meta.update(removed=json.dumps([[]] * 4 + [["noise"]] * 4), gains=json.dumps([0.3, 1.0] * 4))
    old = tmp_path / "old"
    old.mkdir()
    from safetensors.torch import save_file
    save_file(tensors, str(old / "shard-0000.safetensors"), metadata={**meta, "model": "0" * 16})
    cfg = script.RefinerConfig(channels=8, blocks=1)
    kept = script.Pairs([old / "shard-0000.safetensors"], cfg)
    assert len(kept) == 6 and kept.gains == [1.0, 1.0, 0.3, 1.0, 0.3, 1.0]   # 2 dark untold left out
    base, image, decoded, decoded_input, clean = kept.batch(torch.arange(6), (2, 4, 32))
    assert base.shape == clean.shape == (6, 3, 32, 32) and -1 <= float(image.min()) <= float(image.max()) <= 1
    # another model's shards are refused; the same model's train beside this run's own
    with pytest.raises(SystemExit, match="another model"):
        script.main(common + ["-o", str(tmp_path / "second"), "--batches", "1", "--pairs-from", str(old)])
    save_file(tensors, str(old / "shard-0000.safetensors"), metadata=meta | {"model": script.model_fingerprint(model)})
    assert script.main(common + ["-o", str(tmp_path / "third"), "--batches", "1", "--pairs-from", str(old)]) == 0
    with pytest.raises(SystemExit, match="no shard"):
        script.main(common + ["-o", str(tmp_path / "fourth"), "--pairs-from", str(tmp_path)])


def _heavy_and_light_window():
    """(out, clean): window 0 off by 0.1 everywhere (MSE 1e-2: 20 dB in [-1, 1] units),
    window 1 by 0.01 (MSE 1e-4: 40 dB)."""
    clean = torch.zeros(2, 3, 8, 8)
    out = clean.clone()
    out[0] += 0.1
    out[1] += 0.01
    return out, clean


def test_psnr_loss_is_minus_the_mean_psnr(script):
    out, clean = _heavy_and_light_window()
    loss = script.psnr_loss(out, clean)
    assert loss.item() == pytest.approx(10 * (math.log10(1e-2 + script.PSNR_FLOOR) + math.log10(1e-4 + script.PSNR_FLOOR)) / 2)
    # unlike L1, the nearly clean window pulls as hard per dB as the heavily degraded one
    out.requires_grad_(True)
    script.psnr_loss(out, clean).backward()
    assert out.grad[1].abs().mean() > 5 * out.grad[0].abs().mean()


def test_root_loss_weighs_windows_between_l1_and_psnr(script):
    out, clean = _heavy_and_light_window()
    loss = script.root_loss(out, clean)
    assert loss.item() == pytest.approx(((1e-2 + script.PSNR_FLOOR) ** 0.25 + (1e-4 + script.PSNR_FLOOR) ** 0.25) / 2)
    ratios = {}
    for name in ("l1", "root", "psnr"):
        x = out.clone().requires_grad_(True)
        script.LOSSES[name](x, clean).backward()
        ratios[name] = float(x.grad[1].abs().mean() / x.grad[0].abs().mean())
    # per pixel the light window (1/10 the error) pulls as hard as the heavy one under L1,
    # 10x as hard under PSNR and 10^(1/2)x under root (less a little for the floor)
    assert ratios["l1"] == pytest.approx(1.0)
    assert ratios["root"] == pytest.approx(10 ** 0.5, rel=0.1)
    assert ratios["psnr"] > 2.5 * ratios["root"]


def test_camera_noise_jobs_denoise_and_pair_with_the_noise_free_trip(script, tmp_path, astronaut):
    import random

    rng = random.Random(0)
    jobs = [script.draw_job(rng, ("lowlight",), camera=0.5) for _ in range(200)]
    cams = [j for j in jobs if j[0] == script.CAMERA]
    assert 60 < len(cams) < 140 and all(task == "denoise" for _, task, _ in cams)
    assert not any(j[0] == script.CAMERA for j in (script.draw_job(rng) for _ in range(200)))
    Image.fromarray(astronaut[:160, :160]).save(tmp_path / "p.png")
    clean, lq = script.crop_pair(tmp_path / "p.png", script.CAMERA, random.Random(1), 128)
    assert clean.shape == lq.shape == (128, 128, 3)
    # the reference is the crop through the same camera without noise, not the crop itself
    assert not any(np.array_equal(clean, astronaut[y:y + 128, x:x + 128]) for y in range(33) for x in range(33))
    assert 0 < np.abs(clean.astype(int) - lq).mean() < 20


def test_analysed_jobs_tell_the_refiner_what_the_analysis_names(script, tmp_path, astronaut, monkeypatch):
    model, photos = model_and_photos(tmp_path, astronaut)
    pipe = UARE.from_pretrained(model, device="cpu")
    said = iter(["It suffers from modest underexposure and sensor noise.", "It suffers from medium sensor noise."] * 50)
    monkeypatch.setattr(pipe, "_analysis_of_whole", lambda x, job: next(said))
    from uare.imageio import list_images
    tensors, meta = script.make_shard(pipe, list_images(photos), 0, 0, 3, ("lowlight",), dark=1.0, guided=1.0)
    analysed, removed, gains = (json.loads(meta[k]) for k in ("analysed", "removed", "gains"))
    assert len(analysed) == len(removed) == len(tensors["clean"]) == 24
    assert any(analysed)
    for a, r, g in zip(analysed, removed, gains):
        # an analysis naming a skipped type is drawn again; the others tell the refiner
        # what they name, and their crops are not darkened (the analysis may misname it)
        assert (r == ["noise"] and g == 1.0) if a else "lowlight" not in r
    # kept where asked (a refiner trained so runs on every analysed restoration)
    said = iter(["It suffers from modest underexposure and sensor noise."] * 50)
    _, meta = script.make_shard(pipe, list_images(photos), 0, 0, 2, ("lowlight",), guided=1.0, analysed_skipped=True)
    assert all(sorted(r) == ["lowlight", "noise"] for r, a in zip(*(json.loads(meta[k]) for k in ("removed", "analysed")))
               if a)
    monkeypatch.setattr(pipe, "_analysis_of_whole", lambda x, job: "It is badly underexposed.")
    monkeypatch.setattr(script, "draw_job", lambda rng, skip, camera: ("single:noise", "denoise", None))
    with pytest.raises(SystemExit, match="every analysis named a type the refiner skips"):
        script.make_shard(pipe, list_images(photos), 0, 0, 2, ("lowlight",), guided=1.0)
