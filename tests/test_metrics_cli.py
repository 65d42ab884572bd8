"""`uare metrics`: pairing by name, defined behaviour for odd inputs, CSV and exit codes."""
from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from PIL import Image

from uare.cli import main


@pytest.fixture
def folders(tmp_path, small_photo, rng):
    """pred/ and ref/ with: a clean pair, a noisy pair, a grey pred against an RGB ref of the
    same grey, an RGBA ref, a 16-bit grey pair, a size-mismatched pair and an unpaired pred."""
    pred, ref = tmp_path / "pred", tmp_path / "ref"
    pred.mkdir(), ref.mkdir()
    noisy = np.clip(small_photo + rng.normal(0, 10, small_photo.shape), 0, 255).astype(np.uint8)
    grey = small_photo[..., 1]
    Image.fromarray(small_photo).save(pred / "a.png")
    Image.fromarray(small_photo).save(ref / "a.png")
    Image.fromarray(noisy).save(pred / "b.png")
    Image.fromarray(small_photo).save(ref / "b.png")
    Image.fromarray(grey, mode="L").save(pred / "c.png")
    Image.fromarray(np.repeat(grey[..., None], 3, axis=2)).save(ref / "c.png")
    rgba = np.dstack([small_photo, np.full(grey.shape, 255, np.uint8)])
    Image.fromarray(small_photo).save(pred / "d.png")
    Image.fromarray(rgba, mode="RGBA").save(ref / "d.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(pred / "e.png")  # 16-bit, full scale
    Image.fromarray(grey, mode="L").save(ref / "e.png")
    Image.fromarray(small_photo[:100]).save(pred / "f.png")
    Image.fromarray(small_photo).save(ref / "f.png")
    Image.fromarray(small_photo).save(pred / "g.png")
    return pred, ref


def _read(path):
    with open(path, newline="") as f:
        return {row["name"]: row for row in csv.DictReader(f)}


def test_pairs_by_name_scores_odd_inputs_and_reports_bad_pairs(folders, tmp_path, capsys):
    pred, ref = folders
    out = tmp_path / "scores.csv"
    code = main(["metrics", "--pred", str(pred), "--ref", str(ref), "--metrics", "psnr,ssim", "--csv", str(out)])
    assert code == 1  # f has a size mismatch, g has no reference
    rows = _read(out)
    assert set(rows) == set("abcdefg")
    for name in "acde":  # identical content after grey/RGBA/16-bit conversion
        assert math.isinf(float(rows[name]["psnr"])) and float(rows[name]["ssim"]) == pytest.approx(1.0)
    assert 25 < float(rows["b"]["psnr"]) < 40
    assert "sizes differ" in rows["f"]["error"] and rows["f"]["psnr"] == ""
    assert "no reference" in rows["g"]["error"]
    err = capsys.readouterr().err
    assert "f.png" in err and "g.png" in err


def test_summary_means_match_the_python_api(folders, capsys):
    from uare import metrics

    pred, ref = folders
    code = main(["metrics", "--pred", str(pred / "b.png"), "--ref", str(ref / "b.png"),
                 "--metrics", "psnr", "--crop-border", "4", "--no-y-channel"])
    assert code == 0
    expected = metrics.psnr(pred / "b.png", ref / "b.png", y_channel=False, crop_border=4)
    assert f"{expected:.4f}" in capsys.readouterr().out


def test_no_reference_folder_and_usage_errors(tmp_path, astronaut, capsys):
    Image.fromarray(astronaut).save(tmp_path / "x.png")
    assert main(["metrics", "--pred", str(tmp_path), "--json"]) == 0
    out = capsys.readouterr().out
    assert '"niqe"' in out and '"summary"' in out
    assert main(["metrics", "--pred", str(tmp_path), "--metrics", "psnr"]) == 2
    assert main(["metrics", "--pred", str(tmp_path), "--metrics", "nope"]) == 2
    assert main(["metrics", "--pred", str(tmp_path / "missing")]) == 2


def test_an_interrupted_run_resumes_from_its_journal(folders, tmp_path, monkeypatch):
    import uare.commands.metrics as cmd

    pred, ref = folders
    out = tmp_path / "r.csv"
    argv = ["metrics", "--pred", str(pred), "--ref", str(ref), "--metrics", "psnr", "--csv", str(out)]
    real, calls = cmd.score_pair, []

    def dies_on_the_third(metrics_, p, r, crop):
        calls.append(p.name)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(metrics_, p, r, crop)

    monkeypatch.setattr(cmd, "score_pair", dies_on_the_third)
    assert main(argv) == 130
    assert not out.exists() and (tmp_path / "r.csv.partial.jsonl").exists()
    calls.clear()
    monkeypatch.setattr(cmd, "score_pair", lambda *a: (calls.append(a[1].name), real(*a))[1])
    assert main(argv) == 1
    assert "a.png" not in calls and "b.png" not in calls  # done before the interruption
    assert set(_read(out)) == set("abcdefg")
    assert not (tmp_path / "r.csv.partial.jsonl").exists()
