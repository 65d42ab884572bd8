"""Single and mixed degradations: determinism, records, and that each type moves the
image the way its physics says."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import ndimage

from uare.degradations import (MIXED_COMBOS, PRESETS, SINGLE_TYPES, PresetError, degrade,
                               parse_preset, plan, sample_preset)

RECORD_TYPES = {"blur", "noise", "jpeg", "haze", "rain", "raindrop", "lowlight", "downsample",
                "sinc", "sharpen"}


def grey(img) -> np.ndarray:
    a = np.asarray(img, dtype=np.float64) / 255.0
    return a @ np.array([0.299, 0.587, 0.114])


def hf_energy(img) -> float:
    """Mean squared Laplacian response of the luminance: fine detail and noise."""
    return float(np.mean(ndimage.laplace(grey(img)) ** 2))


def blockiness(img) -> float:
    """Mean jump across 8x8 block borders over the mean jump inside blocks (1 = none)."""
    g = grey(img)
    dx = np.abs(np.diff(g, axis=1))
    cols = np.arange(dx.shape[1])
    border = dx[:, cols % 8 == 7].mean()
    inner = dx[:, cols % 8 != 7].mean()
    return float(border / inner)


def dark_channel(img, patch: int = 7) -> float:
    a = np.asarray(img, dtype=np.float64) / 255.0
    return float(ndimage.minimum_filter(a.min(axis=2), size=patch).mean())


def mse(a, b) -> float:
    return float(np.mean((np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) ** 2))


@pytest.fixture(scope="module")
def photo(astronaut) -> np.ndarray:
    return np.ascontiguousarray(astronaut[:160, 100:260])


@pytest.mark.parametrize("preset", PRESETS)
def test_same_seed_gives_identical_image_and_different_seed_differs(preset, photo):
    a, rec_a = degrade(photo, preset, seed=3)
    b, rec_b = degrade(photo, preset, seed=3)
    c, _ = degrade(photo, preset, seed=4)
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert rec_a == rec_b
    assert not np.array_equal(np.asarray(a), np.asarray(c))


@pytest.mark.parametrize("preset", PRESETS)
def test_record_is_plain_json_in_the_design_format(preset, photo):
    img, rec = degrade(photo, preset, seed=1)
    assert json.loads(json.dumps(rec)) == rec
    assert set(rec) == {"preset", "seed", "scale", "input_size", "output_size", "steps", "severity"}
    assert rec["seed"] == 1 and rec["input_size"] == [160, 160]
    assert rec["output_size"] == [img.width, img.height]
    assert rec["scale"] in (1, 4) and img.width == 160 // rec["scale"]
    for step in rec["steps"]:
        assert set(step) == {"type", "op", "params"} and step["type"] in RECORD_TYPES
    # every degrading step has a severity; the USM of the clean image is not a defect
    assert set(rec["severity"]) == {s["type"] for s in rec["steps"]} - {"sharpen"}
    assert all(0.0 <= v <= 1.0 for v in rec["severity"].values())


def test_noise_raises_high_frequency_energy(photo):
    for seed in range(4):  # Gaussian and Poisson, grey and colour
        lq, rec = degrade(photo, "single:noise:0.5", seed=seed)
        assert hf_energy(lq) > 2 * hf_energy(photo), rec["steps"]


def test_blur_lowers_high_frequency_energy_for_every_kernel_kind(photo):
    ops = set()
    for seed in range(12):
        lq, rec = degrade(photo, "single:blur:0.5", seed=seed)
        ops.add(rec["steps"][0]["op"])
        assert hf_energy(lq) < 0.5 * hf_energy(photo), rec["steps"]
    assert ops == {"gaussian_iso", "gaussian_aniso", "motion", "defocus"}


def test_lowlight_lowers_mean_luminance(photo):
    lq, _ = degrade(photo, "single:lowlight:0.3", seed=0)
    assert grey(lq).mean() < 0.6 * grey(photo).mean()


def test_haze_lowers_contrast_and_raises_dark_channel(photo):
    lq, _ = degrade(photo, "single:haze:0.5", seed=0)
    assert grey(lq).std() < 0.7 * grey(photo).std()
    assert dark_channel(lq) > dark_channel(photo) + 0.1


def test_jpeg_raises_blockiness(coffee):
    img = np.ascontiguousarray(coffee[:192, :256])
    lq, rec = degrade(img, "single:jpeg:0.8", seed=0)
    assert rec["steps"][0]["params"]["quality"] < 30
    assert blockiness(lq) > 1.3 * blockiness(img)


def test_rain_adds_bright_streaks_along_the_fall_direction(photo):
    lq, rec = degrade(photo, "single:rain:0.6", seed=0)
    diff = grey(lq) - grey(photo)
    assert diff.mean() > 0.01 and np.percentile(diff, 1) > -1e-6  # light only added
    angle = rec["steps"][0]["params"]["angle"]
    assert abs(angle - math.pi / 2) <= 0.35
    # Near-vertical streaks vary fast across x and slowly along y.
    across = np.mean(np.diff(diff, axis=1) ** 2)
    along = np.mean(np.diff(diff, axis=0) ** 2)
    assert across > 3 * along


def test_raindrops_cover_part_of_the_image_with_a_defocused_view(photo):
    lq, _ = degrade(photo, "single:raindrop:0.7", seed=0)
    changed = np.abs(grey(lq) - grey(photo)) > 0.02
    assert 0.02 < changed.mean() < 0.7
    assert hf_energy(lq) < hf_energy(photo)


@pytest.mark.parametrize("name", ["single:downsample", "single:sr"])
def test_downsample_is_x4_also_for_sizes_not_divisible_by_4(name, photo):
    img = photo[:130, :97]
    lq, rec = degrade(img, name, seed=0)
    assert lq.size == (97 // 4, 130 // 4) and rec["scale"] == 4
    assert rec["output_size"] == [24, 32]


@pytest.mark.parametrize("kind", SINGLE_TYPES)
def test_severity_maps_monotonically_onto_strength(kind, photo):
    errors = []
    for s in (0.1, 0.5, 0.9):
        lq, rec = degrade(photo, f"single:{kind}:{s}", seed=5)
        assert rec["severity"] == {kind: s}
        ref = photo if lq.size == (160, 160) else degrade(photo, "single:downsample:0", seed=5)[0]
        errors.append(mse(lq, ref))
    assert errors[0] < errors[1] < errors[2], errors


def test_mixed_types_apply_in_physical_order_whatever_the_naming(photo):
    a, rec_a = degrade(photo, "multi:noise+jpeg+lowlight", seed=2)
    b, rec_b = degrade(photo, "multi:lowlight+noise+jpeg", seed=2)
    assert np.array_equal(np.asarray(a), np.asarray(b))
    order = [(s["type"], s["op"]) for s in rec_a["steps"]]
    assert order == [("lowlight", "exposure_gamma"), ("lowlight", "sensor_noise"),
                     ("noise", order[2][1]), ("jpeg", "jpeg")]


def test_every_table2_combination_is_a_preset_with_its_types():
    assert len(MIXED_COMBOS) == 9
    for combo in MIXED_COMBOS:
        rec = plan("multi:" + "+".join(combo), seed=0, size=(64, 64))
        assert set(rec["severity"]) == set(combo)


@pytest.mark.parametrize("bad", ["blurry", "single:fog", "single:noise:1.5", "single:noise:x",
                                 "multi:noise", "multi:noise+noise", "realesrgan:2", ""])
def test_unknown_preset_is_a_value_error_listing_valid_presets(bad, photo):
    with pytest.raises(PresetError) as e:
        degrade(photo, bad)
    assert isinstance(e.value, ValueError)
    assert "valid presets" in str(e.value) or "[0, 1]" in str(e.value)


def test_bad_seed_and_tiny_image_are_clear_errors(photo):
    with pytest.raises(ValueError, match="seed"):
        degrade(photo, "single:noise", seed=-1)
    with pytest.raises(ValueError, match="too small"):
        degrade(photo[:3, :3], "realesrgan")


def test_parse_preset_accepts_aliases_and_case():
    assert parse_preset("single:SR") == ("single", ("downsample",), None)
    assert parse_preset("multi:Low-Light+blur") == ("multi", ("lowlight", "blur"), None)


def test_sample_preset_draws_valid_presets_of_every_kind():
    rng = np.random.default_rng(0)
    drawn = [sample_preset(rng) for _ in range(300)]
    assert set(drawn) <= set(PRESETS)
    assert {p.split(":")[0] for p in drawn} == {"single", "multi", "realesrgan"}
    only_multi = {sample_preset(rng, {"multi": 1.0}) for _ in range(50)}
    assert only_multi <= {p for p in PRESETS if p.startswith("multi:")}
    with pytest.raises(ValueError, match="unknown kinds"):
        sample_preset(rng, {"weird": 1.0})


def test_plan_matches_degrade_without_making_pixels(photo):
    for preset in ("multi:lowlight+blur+noise", "realesrgan", "single:rain:0.4"):
        _, rec = degrade(photo, preset, seed=9)
        assert plan(preset, seed=9, size=(160, 160)) == rec


def test_noise_ops_have_the_configured_statistics():
    import torch

    from uare.degradations.noise import gaussian_noise, poisson_noise
    from uare.degradations.ops import torch_generator

    x = torch.linspace(0, 1, 256).repeat(3, 256, 1)[None]  # every 8-bit level, 3 channels
    n = gaussian_noise(x, 10.0, False, torch_generator(0))
    assert abs(float(n.std()) * 255 - 10.0) < 0.2 and abs(float(n.mean())) < 1e-3
    grey = gaussian_noise(x, 10.0, True, torch_generator(0))
    assert torch.equal(grey[:, 0], grey[:, 2])
    p = poisson_noise(x, 1.0, False, torch_generator(1))
    assert abs(float(p.mean())) < 2e-3  # shot noise is unbiased
    # Variance of Poisson(λ)/256 is λ/256² = level/256: brighter pixels are noisier.
    dark, bright = p[..., :64].var().item(), p[..., -64:].var().item()
    assert 0.1 / 256 < dark < 0.15 / 256 and 0.85 / 256 < bright < 1.0 / 256
