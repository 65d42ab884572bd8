"""`uare degrade`: outputs and manifest, bad inputs skipped, resumable reruns."""
from __future__ import annotations

import numpy as np
from PIL import Image

from uare.cli import main
from uare.degradations import degrade
from uare.imageio import read_jsonl


def make_inputs(tmp_path, small_photo):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(small_photo).save(src / "a.png")
    Image.fromarray(small_photo[::-1].copy()).save(src / "b.jpg", quality=95)
    (src / "broken.png").write_bytes(b"not an image")
    return src


def test_degrade_writes_images_and_manifest_and_skips_unreadable(tmp_path, small_photo, capsys):
    src = make_inputs(tmp_path, small_photo)
    out = tmp_path / "out"
    code = main(["degrade", str(src), "-o", str(out), "--preset", "single:noise:0.3", "--count", "2",
                 "--seed", "5"])
    assert code == 1  # the broken file failed, the others were written
    assert "broken.png" in capsys.readouterr().err
    recs = read_jsonl(out / "manifest.jsonl")
    assert sorted(r["output"] for r in recs) == [
        "a_single-noise-0.3_0.png", "a_single-noise-0.3_1.png",
        "b_single-noise-0.3_0.png", "b_single-noise-0.3_1.png"]
    for r in recs:
        assert r["preset"] == "single:noise:0.3" and r["source"].endswith((".png", ".jpg"))
        got = np.asarray(Image.open(out / r["output"]))
        want, rec = degrade(r["source"], "single:noise:0.3", seed=r["seed"])
        assert np.array_equal(got, np.asarray(want))  # the manifest reproduces the image
        assert rec["steps"] == r["steps"]
    assert len({r["seed"] for r in recs}) == 4


def test_rerun_skips_outputs_already_in_the_manifest(tmp_path, small_photo):
    src = make_inputs(tmp_path, small_photo)
    (src / "broken.png").unlink()
    out = tmp_path / "out"
    args = ["degrade", str(src), "-o", str(out), "--preset", "realesrgan"]
    assert main(args) == 0
    first = (out / "a_realesrgan_0.png").stat().st_mtime_ns
    (out / "b_realesrgan_0.png").unlink()  # as if killed before b was written
    lines = [r for r in read_jsonl(out / "manifest.jsonl") if r["output"] != "b_realesrgan_0.png"]
    (out / "manifest.jsonl").write_text("".join(__import__("json").dumps(r) + "\n" for r in lines))
    assert main(args) == 0
    assert (out / "a_realesrgan_0.png").stat().st_mtime_ns == first
    recs = read_jsonl(out / "manifest.jsonl")
    assert sorted(r["output"] for r in recs) == ["a_realesrgan_0.png", "b_realesrgan_0.png"]
    assert Image.open(out / "b_realesrgan_0.png").size == (32, 32)


def test_single_file_with_one_copy_uses_the_seed_as_given(tmp_path, small_photo):
    Image.fromarray(small_photo).save(tmp_path / "x.png")
    out = tmp_path / "o"
    assert main(["degrade", str(tmp_path / "x.png"), "-o", str(out), "--preset", "multi:blur+jpeg",
                 "--seed", "7"]) == 0
    want, _ = degrade(small_photo, "multi:blur+jpeg", seed=7)
    assert np.array_equal(np.asarray(Image.open(out / "x_multi-blur-jpeg_0.png")), np.asarray(want))


def test_bad_preset_or_count_is_a_usage_error(tmp_path, small_photo, capsys):
    Image.fromarray(small_photo).save(tmp_path / "x.png")
    assert main(["degrade", str(tmp_path / "x.png"), "-o", str(tmp_path / "o"), "--preset", "fog"]) == 2
    assert "valid presets" in capsys.readouterr().err
    assert main(["degrade", str(tmp_path / "x.png"), "-o", str(tmp_path / "o"), "--preset", "realesrgan",
                 "--count", "0"]) == 2
    assert not (tmp_path / "o").exists()
