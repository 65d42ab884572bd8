"""Real-ESRGAN's second-order pipeline: sampled frequencies match the configured
probabilities, kernels and codecs are the documented ones, batches equal single calls."""
from __future__ import annotations

import io
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from uare.degradations import DEFAULT_CONFIG, degrade, realesrgan_batch, sample_realesrgan
from uare.degradations.jpeg import jpeg_roundtrip_uint8, quant_tables
from uare.degradations.kernels import GAUSSIAN_FAMILIES, gaussian_family_kernel, sinc_kernel
from uare.degradations.noise import _poisson_alias, _poisson_support, poisson_noise
from uare.degradations.ops import (TRIM_MASS, _filter2d_direct, _filter2d_fft, filter2d, separable_taps,
                                   torch_generator, trim_kernel, usm_sharpen)
from uare.degradations.realesrgan import run_each

N_RECORDS = 2000


def frequency_problems(records, cfg=DEFAULT_CONFIG) -> list[str]:
    """Every configured probability against its observed frequency; a problem is a
    deviation beyond three standard errors of a binomial proportion."""
    problems = []

    def check(name, hits, n, p):
        se = math.sqrt(p * (1 - p) / n)
        if abs(hits / n - p) > 3 * se:
            problems.append(f"{name}: {hits}/{n} = {hits / n:.3f}, configured {p:.3f} (3 SE = {3 * se:.3f})")

    def steps(rec, typ, stage):
        return [s for s in rec["steps"] if s["type"] == typ and s["params"].get("stage") == stage]

    n = len(records)
    for stage, kcfg in ((1, cfg.stage1.kernel), (2, cfg.stage2.kernel)):
        blurs = [b for r in records for b in steps(r, "blur", stage)]
        check(f"stage {stage} sinc kernel", sum(b["op"] == "sinc" for b in blurs), len(blurs), kcfg.sinc_prob)
        for fam, p in zip(kcfg.families, kcfg.family_probs):
            check(f"stage {stage} {fam}", sum(b["op"] == fam for b in blurs), len(blurs), (1 - kcfg.sinc_prob) * p)
    check("second blur", sum(bool(steps(r, "blur", 2)) for r in records), n, cfg.second_blur_prob)
    for stage, scfg in ((1, cfg.stage1), (2, cfg.stage2)):
        noises = [s for r in records for s in steps(r, "noise", stage)]
        check(f"stage {stage} gaussian noise", sum(s["op"] == "gaussian" for s in noises), n,
              scfg.gaussian_noise_prob)
        check(f"stage {stage} grey noise", sum(s["params"]["grey"] for s in noises), n, scfg.grey_noise_prob)
        resizes = [s for r in records for s in steps(r, "downsample", stage)]
        for d, p in zip(("up", "down", "keep"), scfg.resize_probs):
            check(f"stage {stage} resize {d}", sum(s["params"]["direction"] == d for s in resizes), n, p)
    order = [[s["type"] for s in r["steps"] if s["params"].get("stage") == "final"] for r in records]
    check("final resize+sinc before JPEG", sum(o[0] == "downsample" for o in order), n, cfg.resize_then_jpeg_prob)
    check("final sinc", sum("sinc" in o for o in order), n, cfg.final_sinc_prob)
    return problems


@pytest.fixture(scope="module")
def records():
    return [sample_realesrgan(seed, (400, 400)) for seed in range(N_RECORDS)]


def test_sampled_frequencies_match_configured_probabilities(records):
    assert frequency_problems(records) == []


def test_frequency_check_catches_a_wrong_probability(records):
    wrong = replace(DEFAULT_CONFIG, second_blur_prob=0.7, resize_then_jpeg_prob=0.6)
    problems = frequency_problems(records, wrong)
    assert any("second blur" in p for p in problems)
    assert any("final resize" in p for p in problems)


def test_sampled_parameters_stay_in_documented_ranges(records):
    for rec in records:
        for s in rec["steps"]:
            p, t, stage = s["params"], s["type"], s["params"].get("stage")
            if t == "blur":
                assert p["size"] in range(7, 22, 2)
                if s["op"] == "sinc":
                    lo = math.pi / 3 if p["size"] < 13 else math.pi / 5
                    assert lo <= p["omega_c"] <= math.pi
                else:
                    hi = 3.0 if stage == 1 else 1.5
                    assert 0.2 <= p["sigma_x"] <= hi and 0.2 <= p["sigma_y"] <= hi
                    if s["op"].startswith("generalized"):
                        assert 0.5 <= p["beta"] <= 4
                    if s["op"].startswith("plateau"):
                        assert 1 <= p["beta"] <= 2
            elif t == "noise":
                if s["op"] == "gaussian":
                    assert 1 <= p["sigma"] <= (30 if stage == 1 else 25)
                else:
                    assert 0.05 <= p["scale"] <= (3 if stage == 1 else 2.5)
            elif t == "jpeg":
                assert 30 <= p["quality"] <= 95
            elif t == "sinc":
                assert math.pi / 3 <= p["omega_c"] <= math.pi
            elif t == "downsample" and stage == 1 and p["direction"] == "down":
                assert 0.15 <= p["scale"] <= 1.0
            elif t == "downsample" and stage == 2 and p["direction"] == "up":
                assert 1.0 <= p["scale"] <= 1.2
        assert rec["output_size"] == [100, 100]
        assert rec["steps"][0]["type"] == "sharpen"


def test_kernels_are_normalised_and_shaped_as_documented():
    for fam in ("gaussian", "generalized", "plateau"):
        k = gaussian_family_kernel(21, 2.0, 0.7, 0.4, beta=1.5, shape=fam)
        assert k.shape == (21, 21) and abs(float(k.sum()) - 1) < 1e-5
        assert torch.allclose(k, k.flip(0).flip(1))  # point-symmetric: correlation = convolution
    iso = gaussian_family_kernel(11, 1.3, 1.3, 0.0)
    g = torch.exp(-0.5 * (torch.arange(-5, 6.0) / 1.3) ** 2)
    assert torch.allclose(iso, torch.outer(g, g) / torch.outer(g, g).sum(), atol=1e-7)
    # Rotating by 90 degrees swaps the axes.
    a = gaussian_family_kernel(15, 2.5, 0.8, 0.0)
    assert torch.allclose(gaussian_family_kernel(15, 2.5, 0.8, math.pi / 2), a.T, atol=1e-6)
    s = sinc_kernel(13, math.pi / 2, pad_to=21)
    assert s.shape == (21, 21) and abs(float(s.sum()) - 1) < 1e-5 and float(s[0].abs().sum()) == 0.0
    assert set(GAUSSIAN_FAMILIES) == set(DEFAULT_CONFIG.stage1.kernel.families)


def test_fft_and_direct_filtering_agree():
    x = torch.rand(2, 3, 37, 53, generator=torch.Generator().manual_seed(0))
    k = torch.stack([gaussian_family_kernel(21, 3.0, 1.0, 0.3), sinc_kernel(21, 1.0)])
    assert torch.allclose(_filter2d_fft(x, k), _filter2d_direct(x, k), atol=1e-5)


def test_one_kernel_paths_equal_the_direct_correlation():
    """filter2d with one kernel trims negligible rings and picks two 1-D passes, a direct
    or an FFT correlation: all equal the plain 2-D correlation to float rounding."""
    x = torch.rand(2, 3, 45, 61, generator=torch.Generator().manual_seed(1))
    kernels = {"iso": gaussian_family_kernel(21, 1.1, 1.1, 0.0),
               "axis-aligned aniso": gaussian_family_kernel(15, 2.0, 0.6, 0.0),
               "rotated aniso": gaussian_family_kernel(13, 2.5, 0.5, 0.7),
               "generalized iso": gaussian_family_kernel(21, 2.5, 2.5, 0.0, beta=2.0, shape="generalized"),
               "plateau": gaussian_family_kernel(9, 1.0, 1.0, 0.0, beta=1.5, shape="plateau"),
               "sinc": sinc_kernel(21, 1.2)}
    for name, k in kernels.items():
        ref = _filter2d_direct(x, k[None].expand(2, -1, -1))
        assert torch.allclose(filter2d(x, k), ref, atol=2e-6), name
    assert separable_taps(kernels["iso"]) is not None
    assert separable_taps(kernels["axis-aligned aniso"]) is not None
    for name in ("rotated aniso", "generalized iso", "plateau", "sinc"):
        assert separable_taps(kernels[name]) is None, name


def test_trimming_drops_only_negligible_rings():
    small = gaussian_family_kernel(21, 0.5, 0.5, 0.0)
    t = trim_kernel(small, TRIM_MASS)
    assert t.shape[-1] < 9 and float(small.double().abs().sum() - t.double().abs().sum()) <= TRIM_MASS
    wide = gaussian_family_kernel(21, 3.0, 3.0, 0.0)
    assert trim_kernel(wide, TRIM_MASS).shape == (21, 21)
    assert trim_kernel(sinc_kernel(13, 1.0, pad_to=21)).shape == (13, 13)  # zero padding only


def test_poisson_tables_sample_the_poisson_distribution():
    from scipy import stats

    threshold, alias = _poisson_alias(256)
    k = _poisson_support(256)
    for code in (0, 1, 40, 255):
        # Probability of each count in the table: its own column's share plus the shares
        # that other columns hand to it as their alias.
        t, a = threshold[code * k:(code + 1) * k], alias[code * k:(code + 1) * k].astype(int)
        prob = t / k + np.bincount(a, weights=(1 - t) / k, minlength=k)
        lam = float(np.float32(code) / np.float32(255)) * 256
        assert np.abs(prob - stats.poisson.pmf(np.arange(k), lam)).max() < 1e-12


def test_poisson_counts_fit_the_pmf():
    from scipy import stats

    # 256 distinct levels, so vals = 256 photons at full scale; level 100 -> λ ≈ 100.4.
    x = torch.linspace(0, 1, 256).repeat(3, 128, 1)[None]
    n = poisson_noise(x, 1.0, False, torch_generator(5))
    counts = torch.round((n + x) * 256)[..., 100].flatten().numpy().astype(int)
    lam = float(np.float32(100) / np.float32(255)) * 256
    bins = np.arange(int(lam - 25), int(lam + 26))
    observed = np.array([(counts < bins[0]).sum()] + [(counts == b).sum() for b in bins[1:-1]]
                        + [(counts >= bins[-1]).sum()])
    cdf = stats.poisson.cdf(bins, lam)
    expected = np.diff(np.concatenate([[0.0], cdf[:-1], [1.0]])) * counts.size
    chi2 = ((observed - expected) ** 2 / expected).sum()
    assert stats.chi2.sf(chi2, len(bins) - 1) > 1e-3


def test_run_each_uses_every_worker_and_reraises():
    out = [None] * 7
    before = torch.get_num_threads()

    def fn(i):
        out[i] = (i * i, torch.get_num_threads())
    run_each(fn, 7, workers=3)
    assert [o[0] for o in out] == [i * i for i in range(7)] and all(o[1] == 1 for o in out)
    assert torch.get_num_threads() == before

    def bad(i):
        if i == 2:
            raise RuntimeError("sample 2 failed")
    with pytest.raises(RuntimeError, match="sample 2"):
        run_each(bad, 5, workers=2)


def test_threaded_batch_is_deterministic_whatever_the_worker_count(small_photo):
    gt = torch.from_numpy(np.stack([small_photo, small_photo[::-1].copy()] * 2).astype(np.float32) / 255)
    gt = gt.permute(0, 3, 1, 2).contiguous()
    seeds = [3, 4, 5, 6]
    lq2, usm2, _ = realesrgan_batch(gt, seeds, workers=2)
    lq3, usm3, _ = realesrgan_batch(gt, seeds, workers=3)
    again, _, _ = realesrgan_batch(gt, seeds, workers=2)
    assert torch.equal(lq2, lq3) and torch.equal(usm2, usm3) and torch.equal(lq2, again)


def test_jpeg_continuous_quality_equals_pillow_at_integer_quality(astronaut):
    img = np.ascontiguousarray(astronaut[:96, :120])
    for q in (50, 75, 95):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=q)
        assert np.array_equal(jpeg_roundtrip_uint8(img, q), np.asarray(Image.open(buf)))
    luma = [sum(quant_tables(q)[0]) for q in (30.0, 30.5, 31.0, 62.25, 95.0)]
    assert luma == sorted(luma, reverse=True) and len(set(luma)) == len(luma)


def test_usm_sharpens_edges_and_leaves_flat_areas_alone():
    flat = torch.full((1, 3, 60, 60), 0.4)
    assert torch.equal(usm_sharpen(flat), flat)
    edge = torch.zeros(1, 3, 60, 60)
    edge[..., 30:] = 0.6
    edge[..., :30] = 0.3
    out = usm_sharpen(edge)
    assert out[..., 29].mean() < 0.3 and out[..., 30].mean() > 0.6  # overshoot at the edge


def test_batch_equals_one_by_one_and_shapes_are_x4(small_photo):
    imgs = [small_photo, small_photo[::-1].copy(), small_photo[:, ::-1].copy()]
    gt = torch.from_numpy(np.stack(imgs).astype(np.float32) / 255).permute(0, 3, 1, 2).contiguous()
    seeds = [11, 12, 13]
    lq, gt_usm, recs = realesrgan_batch(gt, seeds)
    assert lq.shape == (3, 3, 32, 32) and gt_usm.shape == gt.shape
    whole, whole_usm, _ = realesrgan_batch(gt, seeds, chunk=3)  # the GPU path: one grouped pass
    assert (whole - lq).abs().max() <= 1 / 255 + 1e-6 and torch.allclose(whole_usm, gt_usm, atol=1e-5)
    assert torch.equal(lq, torch.round(lq * 255) / 255)  # quantised to 8 bits
    for i, seed in enumerate(seeds):
        single, rec = degrade(imgs[i], "realesrgan", seed=seed)
        assert rec["steps"] == recs[i]["steps"]
        diff = np.abs(np.asarray(single, dtype=int) - np.round(lq[i].permute(1, 2, 0).numpy() * 255))
        assert diff.max() <= 1 and (diff == 0).mean() > 0.99


def test_batch_rejects_wrong_shapes_and_seed_counts(small_photo):
    gt = torch.rand(2, 3, 32, 32)
    with pytest.raises(ValueError, match="seeds"):
        realesrgan_batch(gt, [1])
    with pytest.raises(ValueError, match="expected"):
        realesrgan_batch(gt[:, :1], [1, 2])


def test_severity_grows_with_the_sampled_strength(records):
    for key, field in (("jpeg", "quality"),):
        pairs = [(min(s["params"][field] for s in r["steps"] if s["type"] == key), r["severity"][key])
                 for r in records[:300]]
        q, sev = np.array(pairs).T
        assert np.all(np.diff(sev[np.argsort(-q)]) >= -1e-12)
    assert all(set(r["severity"]) >= {"blur", "noise", "jpeg", "downsample"} for r in records)
    # USM prepares the clean image (and the target): not a defect of the LQ image.
    assert not any("sharpen" in r["severity"] for r in records)
