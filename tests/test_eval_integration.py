"""Eval harness against the real uare.metrics and uare.degradations (no fakes)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from uare.eval import EvalConfig, evaluate_monotonic, evaluate_restore, evaluate_sr

metrics = pytest.importorskip("uare.metrics", reason="needs uare.metrics")
degradations = pytest.importorskip("uare.degradations", reason="needs uare.degradations")


@pytest.fixture
def hq(tmp_path, astronaut, coffee):
    folder = tmp_path / "HQ"
    folder.mkdir()
    Image.fromarray(np.ascontiguousarray(astronaut[32:160, 160:288])).save(folder / "a.png")
    Image.fromarray(np.ascontiguousarray(coffee[100:228, 200:328])).save(folder / "b.png")
    return folder


def test_sr_numbers_equal_uare_metrics_with_the_sr_convention(tmp_path, hq):
    lr = tmp_path / "LR"
    lr.mkdir()
    for p in hq.iterdir():
        Image.open(p).resize((32, 32), Image.BICUBIC).save(lr / p.name)
    res = evaluate_sr(lr, hq, EvalConfig(out=tmp_path / "run", methods=["bicubic"],
                                         metrics=["psnr", "ssim"], plots=False, gallery=False))
    outs = [np.asarray(Image.open(tmp_path / "run" / "images" / "bicubic" / p.name)) for p in sorted(hq.iterdir())]
    refs = [np.asarray(Image.open(p)) for p in sorted(hq.iterdir())]
    for name, fn in (("psnr", metrics.psnr), ("ssim", metrics.ssim)):
        expect = np.mean([fn(o, r, y_channel=True, crop_border=4) for o, r in zip(outs, refs)])
        assert res.table[0][name] == pytest.approx(expect, rel=1e-9)


def test_restore_with_real_degradations_runs_only_methods_that_do_the_task(tmp_path, hq):
    res = evaluate_restore(hq, "single:noise:0.6", EvalConfig(
        out=tmp_path / "run", methods=["bicubic", "richardson_lucy", "dcp"], metrics=["psnr"],
        plots=False, gallery=False))
    assert res.exit_code == 0
    # Only methods that do denoising run; bicubic is the untouched input.
    assert [r["method"] for r in res.table] == ["bicubic"]
    assert any("richardson_lucy" in s for s in res.skipped)
    lq = np.asarray(Image.open(tmp_path / "run" / "inputs" / "single_noise_0.6" / "a.png"))
    assert res.table[0]["psnr"] < 35 and lq.shape == (128, 128, 3)


def test_niqe_rises_with_real_noise_in_the_monotonic_sweep(tmp_path, astronaut):
    hq = tmp_path / "big"
    hq.mkdir()
    Image.fromarray(np.ascontiguousarray(astronaut[:192, 128:320])).save(hq / "a.png")  # NIQE: >= 2 blocks
    res = evaluate_monotonic(hq, EvalConfig(out=tmp_path / "run", methods=["niqe"], plots=False),
                             types=["noise"], levels=[0.5, 1.0])
    assert res.exit_code == 0
    assert res.table[0]["noise"] > 0.5


@pytest.mark.slow
def test_uare_plug_in_runs_the_real_pipeline_on_a_micro_model(tmp_path, astronaut):
    """Random weights, so only the plumbing is checked: folder, steps, x4 size, table row."""
    from model_helpers import micro_model
    from uare.tokenizer import train_tokenizer
    model = micro_model()
    model.set_tokenizer(train_tokenizer(["enhance this image with degradation"] * 10, 300))
    model.save_pretrained(tmp_path / "micro")
    lr, hr = tmp_path / "LR", tmp_path / "HR"
    lr.mkdir(), hr.mkdir()
    Image.fromarray(np.ascontiguousarray(astronaut[:64, :64])).save(hr / "a.png")
    Image.fromarray(np.ascontiguousarray(astronaut[:64, :64])).resize((16, 16)).save(lr / "a.png")
    res = evaluate_sr(lr, hr, EvalConfig(out=tmp_path / "run", methods=[f"uare:model={tmp_path / 'micro'}:steps=2"],
                                         metrics=["psnr"], plots=False))
    assert res.exit_code == 0, res.failures
    assert res.table[0]["count"] == 1 and np.isfinite(res.table[0]["psnr"])
