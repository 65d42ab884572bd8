"""Eval harness: IQA against opinion scores, the monotonic sweep, our model as a plug-in, CLI."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from test_eval_fakes import fake_degrade, fake_factory
from uare.eval import EvalConfig, correlations, evaluate_iqa, evaluate_monotonic, evaluate_sr
from uare.eval.cache import ResultCache
from uare.eval.ours import UareMethod
from uare.eval.methods import MethodError, create_method, parse_spec


@pytest.fixture
def rated(tmp_path, small_photo):
    """Ten noisy versions of one photo; opinion = 5 - sigma/10 (cleaner is better)."""
    root = tmp_path / "db"
    (root / "imgs").mkdir(parents=True)
    rows = []
    for i, sigma in enumerate([0, 3, 6, 10, 14, 18, 24, 30, 38, 45]):
        noisy = small_photo + np.random.default_rng(i).normal(0, sigma, small_photo.shape)
        Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(root / "imgs" / f"n{i}.png")
        rows.append({"image": f"imgs/n{i}.png", "mos": 5 - sigma / 10})
    rows.append({"image": "imgs/absent.png", "mos": 3.0})
    scores = tmp_path / "scores.csv"
    with open(scores, "w", newline="") as f:
        w = csv.DictWriter(f, ["image", "mos"])
        w.writeheader()
        w.writerows(rows)
    return root, scores


def test_correlations_match_scipy_and_handle_degenerate_input():
    from scipy import stats
    x, y = [1, 2, 3, 4, 5], [1.2, 1.9, 3.5, 3.9, 5.5]
    c = correlations(x, y)
    assert c["plcc"] == pytest.approx(stats.pearsonr(x, y)[0])
    assert c["srcc"] == pytest.approx(1.0) and c["krcc"] == pytest.approx(1.0)
    assert np.isnan(correlations([1, 1, 1], [1, 2, 3])["srcc"])


def test_iqa_orients_lower_is_better_scores_and_reports_missing_images(rated, tmp_path):
    root, scores = rated
    cfg = EvalConfig(out=tmp_path / "run", methods=["rough_iqa"], plots=False)
    res = evaluate_iqa(root, scores, "csv", cfg)
    row = res.table[0]
    assert row["n"] == 10 and row["srcc"] > 0.9 and row["plcc"] > 0.8   # negated before correlating
    assert any("1 of 11 rated images" in s for s in res.skipped)
    per = list(csv.DictReader(open(tmp_path / "run" / "iqa_per_image.csv")))
    assert len(per) == 10
    raw = [float(r["score"]) for r in per]
    assert correlations(raw, [float(r["mos"]) for r in per])["srcc"] == pytest.approx(-row["srcc"])


def test_iqa_rerun_reuses_cached_scores(rated, tmp_path, monkeypatch):
    root, scores = rated
    cfg = EvalConfig(out=tmp_path / "run", methods=["rough_iqa"], plots=False)
    first = evaluate_iqa(root, scores, "csv", cfg)
    from test_eval_fakes import RoughIQA
    monkeypatch.setattr(RoughIQA, "score", lambda self, image: pytest.fail("recomputed"))
    again = evaluate_iqa(root, scores, "csv", cfg)
    assert again.table == first.table


def test_monotonic_sweep_scores_a_roughness_meter_as_perfectly_monotone(tmp_path, small_photo):
    hq = tmp_path / "HQ"
    hq.mkdir()
    for i in range(2):
        Image.fromarray(np.ascontiguousarray(np.rot90(small_photo, i))).save(hq / f"h{i}.png")
    cfg = EvalConfig(out=tmp_path / "run", methods=["rough_iqa"], plots=False)
    res = evaluate_monotonic(hq, cfg, types=["noise"], levels=[0.25, 0.5, 1.0], degrade=fake_degrade)
    row = res.table[0]
    both = evaluate_monotonic(hq, EvalConfig(out=tmp_path / "two", methods=["rough_iqa"], plots=False),
                              types=["noise", "jpeg"], levels=[0.5], degrade=fake_degrade)
    assert len(both.records) == 2 * 2 * 2
    assert len(ResultCache(tmp_path / "two" / "cache.jsonl")) == 2 * 3   # clean scored once per image
    assert row["noise"] == pytest.approx(1.0) and row["noise_strict"] == pytest.approx(1.0)
    assert row["noise_worst"] == pytest.approx(1.0) and row["noise_at"] == 1.0
    assert len(res.records) == 2 * 4                      # clean + 3 levels per image
    assert len(ResultCache(tmp_path / "run" / "cache.jsonl")) == 2 * 4
    assert (tmp_path / "run" / "monotonic.md").exists()


def test_monotonic_catches_an_iqa_method_that_ignores_the_degradation(tmp_path, small_photo, monkeypatch):
    from test_eval_fakes import RoughIQA
    monkeypatch.setattr(RoughIQA, "score", lambda self, image: 1.0)
    hq = tmp_path / "HQ"
    hq.mkdir()
    Image.fromarray(small_photo).save(hq / "h.png")
    res = evaluate_monotonic(hq, EvalConfig(out=tmp_path / "run", methods=["rough_iqa"], plots=False),
                             types=["noise"], levels=[0.5, 1.0], degrade=fake_degrade)
    assert res.table[0]["noise"] == 0.0 and res.table[0]["noise_strict"] == 0.0


def test_monotonicity_reports_the_worst_image_beside_the_mean():
    from uare.eval.iqa_tasks import monotonicity
    falls, rises = [1.0, 0.8, 0.5, 0.1], [0.1, 0.2, 0.3, 0.4]
    recs = [{"method": "m", "type": "noise", "image": name, "level": lv, "quality": q}
            for name, qs in (("a", falls), ("b", falls), ("c", rises))
            for lv, q in zip([0.0, 0.25, 0.5, 1.0], qs)]
    mean, strict, worst, at = monotonicity(recs, "m", "noise")
    assert mean == pytest.approx(1 / 3) and strict == pytest.approx(2 / 3) and worst == pytest.approx(-1.0)
    assert at == pytest.approx(2 / 3)


def test_one_swap_in_five_levels_meets_a_per_image_target_of_0_9():
    # exactly 1 - 6 * 2 / 120 = 0.9, which scipy computes as 0.8999...
    from uare.eval.iqa_tasks import PER_IMAGE_SRCC, monotonicity
    recs = [{"method": "m", "type": "jpeg", "image": "a", "level": lv, "quality": q}
            for lv, q in zip([0.0, 0.25, 0.5, 0.75, 1.0], [5.0, 4.0, 3.0, 1.0, 2.0])]
    mean, strict, worst, at = monotonicity(recs, "m", "jpeg")
    assert PER_IMAGE_SRCC == 0.9 and worst == 0.9 and mean == 0.9 and at == 1.0 and strict == 0.0


class FakeModel:
    """Stands in for UARE: restore = nearest x4 for sr, assess = mean brightness."""

    def __init__(self, folder):
        self.folder, self.calls = folder, []

    def restore(self, image, task="auto", prompt=None, analyze=False, steps=None, seed=0, **extra):
        from types import SimpleNamespace
        self.calls.append(dict(task=task, prompt=prompt, analyze=analyze, steps=steps, seed=seed, **extra))
        scale = 4 if task == "sr" else 1
        out = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
        return SimpleNamespace(image=out, text="1. intent ... 4. expected result" if analyze else None)

    def assess(self, image):
        from types import SimpleNamespace
        return SimpleNamespace(score=1 + 4 * float(np.asarray(image).mean()) / 255, text="fair")


def test_uare_method_passes_folder_steps_and_analyze_and_saves_its_text(tmp_path, astronaut, monkeypatch):
    monkeypatch.setattr(UareMethod, "loader", staticmethod(FakeModel))
    lr, hr = tmp_path / "LR", tmp_path / "HR"
    lr.mkdir(), hr.mkdir()
    Image.fromarray(astronaut[:64, :64]).save(hr / "a.png")
    Image.fromarray(astronaut[:64, :64]).resize((16, 16), Image.BICUBIC).save(lr / "a.png")
    spec = "uare:model=runs/m1:steps=8:analyze"
    res = evaluate_sr(lr, hr, EvalConfig(out=tmp_path / "run", methods=["bicubic", spec],
                                         metrics=["psnr"], metric_factory=fake_factory, plots=False))
    assert [r["method"] for r in res.table] == ["bicubic", "uare(model=runs/m1,steps=8,analyze)"]
    out = next(r["output"] for r in res.records if r["method"].startswith("uare"))
    text = (tmp_path / "run" / out).with_suffix(".txt")
    assert text.read_text().startswith("1. intent")
    assert "<summary>analysis</summary>1. intent" in res.files["gallery"].read_text()
    method = create_method(spec)
    assert method.model.folder == "runs/m1"
    method.restore(Image.new("RGB", (8, 8)), "sr", 4)
    assert method.model.calls[-1] == dict(task="sr", prompt=None, analyze=True, steps=8, seed=0)
    off = create_method("uare:model=runs/m1:color_fix=off")
    off.restore(Image.new("RGB", (8, 8)), "deblur")
    assert off.model.calls[-1]["color_fix"] is False
    with pytest.raises(MethodError, match="color_fix"):
        create_method("uare:color_fix=maybe")
    half = create_method("uare:model=runs/m1:strength=0.5")
    half.restore(Image.new("RGB", (8, 8)), "deblur")
    assert half.model.calls[-1]["strength"] == 0.5 and "strength" not in off.model.calls[-1]
    with pytest.raises(MethodError, match="strength"):
        create_method("uare:strength=high")
    cold = create_method("uare:model=runs/m1:temperature=0")
    cold.restore(Image.new("RGB", (8, 8)), "deblur")
    assert cold.model.calls[-1]["temperature"] == 0.0 and "temperature" not in half.model.calls[-1]
    kept = create_method("uare:model=runs/m1:mix=0.75")
    kept.restore(Image.new("RGB", (8, 8)), "denoise")
    assert kept.model.calls[-1]["mix"] == 0.75 and "mix" not in cold.model.calls[-1]
    eight = create_method("uare:model=runs/m1:ensemble=8")
    eight.restore(Image.new("RGB", (8, 8)), "denoise")
    assert eight.model.calls[-1]["ensemble"] == 8 and "ensemble" not in kept.model.calls[-1]
    with pytest.raises(MethodError, match="ensemble=.3.* is not a valid ensemble_size"):
        create_method("uare:ensemble=3")
    assert method.score(Image.new("RGB", (8, 8), (255, 255, 255))) == pytest.approx(5.0)


def test_uare_named_is_told_each_inputs_degradations(tmp_path, astronaut, monkeypatch):
    from test_eval_fakes import fake_degrade
    from uare.eval import evaluate_restore

    made = []
    monkeypatch.setattr(UareMethod, "loader", staticmethod(lambda folder: made.append(FakeModel(folder)) or made[-1]))
    hq = tmp_path / "HQ"
    hq.mkdir()
    Image.fromarray(astronaut[:32, :32]).save(hq / "a.png")
    res = evaluate_restore(hq, "single:noise:0.5", EvalConfig(
        out=tmp_path / "run", methods=["uare:model=m:named", "uare:model=m"], metrics=["psnr"],
        metric_factory=fake_factory, plots=False, gallery=False), degrade=fake_degrade)
    assert res.exit_code == 0 and len(res.table) == 2
    named, plain = made
    assert named.calls[-1]["types"] == ["noise"] and named.calls[-1]["task"] == "denoise"
    assert "types" not in plain.calls[-1]


def test_uare_without_a_model_is_skipped_cleanly(tmp_path, monkeypatch):
    from uare.eval.tasks import build_methods
    from uare.eval.methods import MethodUnavailable

    def no_model(folder):
        raise MethodUnavailable(f"uare: cannot load model {folder}: no config.json")
    monkeypatch.setattr(UareMethod, "loader", staticmethod(no_model))
    methods, skipped = build_methods(["bicubic", "uare:model=nowhere"], "sr")
    assert [m.label for m in methods] == ["bicubic"] and "nowhere" in skipped[0]


def test_cli_eval_sr_writes_tables_and_exits_1_on_a_bad_pair(tmp_path, astronaut, monkeypatch, capsys):
    from uare import cli
    from uare.eval import scoring
    monkeypatch.setattr(scoring, "_uare_factory", fake_factory)
    lr, hr = tmp_path / "LR", tmp_path / "HR"
    lr.mkdir(), hr.mkdir()
    for i in range(2):
        Image.fromarray(astronaut[i * 64:i * 64 + 64, :64]).save(hr / f"a{i}.png")
        Image.fromarray(astronaut[i * 64:i * 64 + 64, :64]).resize((16, 16)).save(lr / f"a{i}.png")
    args = ["eval", "sr", "--lr", str(lr), "--hr", str(hr), "--methods", "bicubic,fake_smooth",
            "--metrics", "psnr,rough", "--no-plots", "--json", "-o", str(tmp_path / "run")]
    assert cli.main(args) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["method"] for r in rows] == ["bicubic", "fake_smooth"] and rows[0]["count"] == 2
    Image.fromarray(astronaut[:16, :16]).save(lr / "lonely.png")
    assert cli.main(args) == 1
    assert cli.main(args[:-2] + ["--methods", "nope", "-o", str(tmp_path / "x")]) == 2
    assert "unknown method 'nope'" in capsys.readouterr().err


def test_plots_are_written_when_matplotlib_is_installed(tmp_path, astronaut):
    pytest.importorskip("matplotlib", reason="plots need the eval extra (matplotlib)")
    lr, hr = tmp_path / "LR", tmp_path / "HR"
    lr.mkdir(), hr.mkdir()
    Image.fromarray(astronaut[:32, :32]).save(hr / "a.png")
    Image.fromarray(astronaut[:32, :32]).resize((8, 8)).save(lr / "a.png")
    res = evaluate_sr(lr, hr, EvalConfig(out=tmp_path / "run", methods=["bicubic", "fake_smooth"],
                                         metrics=["psnr", "rough"], metric_factory=fake_factory))
    for key in ("plot_bars", "plot_pd"):
        assert res.files[key].stat().st_size > 1000
        assert Image.open(res.files[key]).format == "PNG"


def test_cli_eval_methods_lists_every_plug_in(capsys):
    from uare import cli
    assert cli.main(["eval", "methods"]) == 0
    names = {line.split()[0] for line in capsys.readouterr().out.splitlines()}
    assert {"bicubic", "nlmeans", "richardson_lucy", "dcp", "gamma", "clahe", "realesrgan", "oidn",
            "uare", "niqe", "piqe"} <= names


def test_a_changed_model_folder_is_run_again_not_read_from_the_cache(tmp_path, monkeypatch):
    """The spec `uare:model=DIR` stays the same when the weights or inference.json in DIR
    change; the cache must not hand back the old model's outputs."""
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "inference.json").write_text('{"steps": 4}')
    monkeypatch.setattr(UareMethod, "loader", staticmethod(lambda f: FakeModel(f)))
    first = create_method(f"uare:model={folder}")
    assert first.fingerprint == create_method(f"uare:model={folder}").fingerprint != first.spec.fingerprint
    (folder / "inference.json").write_text('{"steps": 8}')
    assert create_method(f"uare:model={folder}").fingerprint != first.fingerprint
    # a method with nothing behind its spec keeps the spec's key (old caches stay valid)
    assert create_method("uare:model=runs/nowhere").fingerprint == parse_spec("uare:model=runs/nowhere").fingerprint
