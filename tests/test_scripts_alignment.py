"""scripts/change_alignment.py on a made-up eval run folder."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from script_helpers import load_script


@pytest.fixture(scope="module")
def script():
    return load_script("scripts/change_alignment.py")


def _save(path: Path, a: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(a, 0, 255).round().astype(np.uint8)).save(path)
    return str(path)


def _fake_run(tmp_path: Path, cleans: dict, degrade, outputs) -> tuple[Path, Path]:
    """An eval run folder of noise restorations: for each stem's clean image, the degraded
    input (degrade(clean)) as `bicubic` and outputs(clean, input) -> {method: image}."""
    run, hq = tmp_path / "run", tmp_path / "hq"
    rows = []
    for stem, clean in cleans.items():
        _save(hq / f"{stem}.png", clean)
        x = np.asarray(Image.open(_save(run / f"in/{stem}.png", degrade(clean))), float)
        c = np.asarray(Image.open(hq / f"{stem}.png"), float)
        for method, out in {"bicubic": x, **outputs(c, x)}.items():
            rel = f"images/{method}/{stem}.png"
            _save(run / rel, out)
            rows.append({"dataset": "d single:noise", "image": f"single:noise/{stem}", "method": method,
                         "output": rel, "psnr": 0})
    with open(run / "restore_per_image.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return run, hq


def test_a_change_towards_the_clean_image_aligns_and_an_unrelated_one_does_not(script, tmp_path):
    rng = np.random.default_rng(0)
    run, hq = _fake_run(tmp_path, {s: rng.uniform(60, 190, (32, 32, 3)) for s in "ab"},
                        lambda c: c + rng.normal(0, 12, c.shape),
                        lambda c, x: {"half": x + 0.5 * (c - x), "random": x + rng.normal(0, 6, x.shape)})
    got = {r["method"]: r for r in script.alignment(run, hq)}
    assert set(got) == {"half", "random"}
    assert got["half"]["cosine"] > 0.97 and got["half"]["energy"] == pytest.approx(0.25, abs=0.03)
    assert abs(got["random"]["cosine"]) < 0.1 and got["random"]["energy"] == pytest.approx(0.25, abs=0.05)
    (hq / "b.png").unlink()
    with pytest.raises(SystemExit, match="no clean image named b"):
        script.alignment(run, hq)


def test_mix_curve_finds_the_share_of_a_change_worth_keeping(tmp_path):
    mod = load_script("scripts/mix_curve.py")
    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[0:48, 0:48]
    # smooth content: the noise estimate of mix auto must see only the noise
    cleans = {s: 120 + 50 * np.sin(xx / 9 + p)[..., None] * np.array([1.0, 0.8, 0.6]) + yy[..., None]
              for s, p in (("a", 0.0), ("b", 1.0))}
    # "exact" removes the noise; "wrong" swaps it for as much noise again
    run, hq = _fake_run(tmp_path, cleans, lambda c: c + rng.normal(0, 10, c.shape),
                        lambda c, x: {"exact": c, "wrong": c + rng.normal(0, 10, c.shape)})
    got = {r["method"]: r for r in mod.curves(run, hq)}
    assert got["exact"]["best_share"] == 1.0 and got["exact"]["auto_share"] > 0.9
    assert got["wrong"]["best_share"] == pytest.approx(0.5, abs=0.1)
    assert got["wrong"]["auto_share"] == pytest.approx(0.5, abs=0.15)
    # half of an unrelated noise swap is closer than either end (the average of two draws)
    assert got["wrong"]["best"] > max(got["wrong"]["input"], got["wrong"]["whole"]) + 2.0


class _PoolAE:
    """An autoencoder that keeps only 4x4 block means: blind to detail finer than that."""

    def encode(self, x, sample=False):
        import torch.nn.functional as F
        return F.avg_pool2d(x, 4)

    def decode(self, z):
        import torch.nn.functional as F
        return F.interpolate(z, scale_factor=4, mode="nearest")


def test_the_latent_ceiling_is_the_input_for_a_defect_the_autoencoder_cannot_see():
    mod = load_script("scripts/latent_ceiling.py")
    from uare.metrics.psnr_ssim import psnr

    def p(a, b):
        return float(psnr(np.asarray(a), np.asarray(b)))
    rng = np.random.default_rng(1)
    clean = np.kron(rng.uniform(60, 190, (8, 8, 3)), np.ones((4, 4, 1)))   # constant on 4x4 blocks
    hq = Image.fromarray(clean.round().astype(np.uint8))
    checker = np.indices((32, 32)).sum(0) % 2 * 16 - 8.0                    # zero mean per block
    fine = Image.fromarray((clean + checker[..., None]).round().astype(np.uint8))
    dark = Image.fromarray((clean - 20).round().astype(np.uint8))
    c_fine = mod.ceilings(_PoolAE(), fine, hq, 4, p)
    c_dark = mod.ceilings(_PoolAE(), dark, hq, 4, p)
    assert c_fine["residual"] == pytest.approx(c_fine["input"], abs=0.01)   # nothing to gain
    assert c_dark["residual"] > c_dark["input"] + 20                        # the latent sees it
    assert c_fine["direct"] > 40                                            # the clean image fits
