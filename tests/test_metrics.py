"""PSNR / SSIM / MS-SSIM: conventions, inputs and the registry."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import correlate

from uare import metrics
from uare.metrics import MetricInputError


@pytest.fixture
def offset_pair(rng):
    """A reference in [20, 230] and a copy brighter by exactly 5 on every channel."""
    ref = rng.integers(20, 230, size=(64, 80, 3), dtype=np.uint8)
    return ref + np.uint8(5), ref


def test_limited_range_y_psnr_exceeds_full_range_y_by_20log10_255_over_219(offset_pair):
    pred, ref = offset_pair
    sr = metrics.psnr(pred, ref)  # BT.601 limited-range Y: error shrinks to 5*219/255
    yiq = metrics.psnr(pred, ref, y_channel=True, convention="pyiqa")  # full-range Y: error 5
    assert sr == pytest.approx(20 * math.log10(255 / (5 * 219 / 255)), abs=1e-9)
    assert sr - yiq == pytest.approx(20 * math.log10(255 / 219), abs=1e-3)


def test_pyiqa_psnr_defaults_to_rgb_with_eps_and_sr_gives_inf_for_identical(offset_pair, astronaut):
    pred, ref = offset_pair
    assert metrics.psnr(pred, ref, y_channel=None, convention="pyiqa") == pytest.approx(
        10 * math.log10(1 / ((5 / 255) ** 2 + 1e-8)), abs=1e-9)
    assert metrics.psnr(astronaut, astronaut) == math.inf
    assert metrics.psnr(astronaut, astronaut, convention="pyiqa") == pytest.approx(80.0)


def test_matlab_convention_rounds_y_so_subunit_differences_can_vanish():
    ref = np.full((32, 32, 3), 100, np.uint8)
    pred = ref.copy()
    pred[..., 2] += 1  # blue +1 moves limited-range Y by 24.966/255 < 0.5
    assert math.isfinite(metrics.psnr(pred, ref))
    assert metrics.psnr(pred, ref, convention="matlab") == math.inf


def test_crop_border_ignores_errors_inside_the_border(astronaut):
    pred = astronaut.copy()
    pred[:4] = 0
    pred[:, -4:] = 255
    assert metrics.psnr(pred, astronaut, crop_border=4) == math.inf
    assert metrics.ssim(pred, astronaut, crop_border=4) == pytest.approx(1.0)
    with pytest.raises(MetricInputError, match="crop_border"):
        metrics.psnr(pred, astronaut, crop_border=256)


@pytest.mark.parametrize("convention", ["sr", "matlab", "pyiqa"])
@pytest.mark.parametrize("y_channel", [True, False])
def test_ssim_of_an_image_with_itself_is_one(small_photo, convention, y_channel):
    assert metrics.ssim(small_photo, small_photo, y_channel=y_channel, convention=convention) == pytest.approx(1.0)
    assert metrics.ms_ssim(np.tile(small_photo, (2, 2, 1)), np.tile(small_photo, (2, 2, 1)),
                           convention=convention) == pytest.approx(1.0)


def _reference_ssim(x: np.ndarray, y: np.ndarray) -> float:
    """Textbook SSIM on one float plane: full 2-D Gaussian correlation, then the valid part."""
    g = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5 ** 2))
    win = np.outer(g, g) / np.outer(g, g).sum()

    def f(a):
        return correlate(a, win, mode="constant")[5:-5, 5:-5]

    mx, my = f(x), f(y)
    vx, vy, cxy = f(x * x) - mx ** 2, f(y * y) - my ** 2, f(x * y) - mx * my
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    return float(np.mean((2 * mx * my + c1) * (2 * cxy + c2) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))))


def test_sr_ssim_matches_a_textbook_implementation_on_unrounded_y(small_photo, rng):
    noisy = np.clip(small_photo + rng.normal(0, 12, small_photo.shape), 0, 255).astype(np.uint8)
    w = np.array([65.481, 128.553, 24.966]) / 255
    expected = _reference_ssim(noisy @ w + 16, small_photo @ w + 16)
    assert metrics.ssim(noisy, small_photo) == pytest.approx(expected, abs=1e-10)
    per_channel = np.mean([_reference_ssim(noisy[..., c] * 1.0, small_photo[..., c] * 1.0) for c in range(3)])
    assert metrics.ssim(noisy, small_photo, y_channel=False) == pytest.approx(per_channel, abs=1e-10)


def test_pyiqa_ssim_clamps_negative_structure_so_it_differs_from_sr(small_photo):
    inverted = 255 - small_photo
    assert metrics.ssim(inverted, small_photo) < 0
    assert metrics.ssim(inverted, small_photo, convention="pyiqa") >= 0


def test_batched_tensor_gives_per_image_values_equal_to_single_calls(small_photo, rng):
    noisy = np.clip(small_photo + rng.normal(0, 20, small_photo.shape), 0, 255).astype(np.uint8)
    to_t = lambda a: torch.from_numpy(a).permute(2, 0, 1).float() / 255  # noqa: E731
    pred = torch.stack([to_t(noisy), to_t(small_photo)])
    ref = torch.stack([to_t(small_photo), to_t(small_photo)])
    for fn in (metrics.psnr, metrics.ssim):
        values = fn(pred, ref)
        assert isinstance(values, np.ndarray) and values.shape == (2,)
        assert values[0] == pytest.approx(fn(noisy, small_photo), rel=1e-6)
        assert fn(to_t(noisy), Image.fromarray(small_photo)) == pytest.approx(values[0], rel=1e-6)


def test_paths_and_grey_inputs_are_accepted(tmp_path, small_photo):
    grey = Image.fromarray(small_photo[..., 0], mode="L")
    grey.save(tmp_path / "g.png")
    rgb = np.repeat(small_photo[..., :1], 3, axis=2)
    assert metrics.psnr(tmp_path / "g.png", rgb) == math.inf


def test_size_mismatch_and_out_of_range_tensors_raise_clear_errors(small_photo):
    with pytest.raises(MetricInputError, match="sizes differ"):
        metrics.psnr(small_photo, small_photo[:-1])
    with pytest.raises(MetricInputError, match=r"\[0, 1\]"):
        metrics.ssim(torch.full((1, 3, 32, 32), 2.0), torch.zeros(1, 3, 32, 32))
    with pytest.raises(MetricInputError, match="176x176"):
        metrics.ms_ssim(small_photo, small_photo)
    with pytest.raises(ValueError, match="convention"):
        metrics.psnr(small_photo, small_photo, convention="bogus")


def test_ms_ssim_falls_as_noise_grows(astronaut, rng):
    noise = rng.normal(0, 1, astronaut.shape)
    values = [metrics.ms_ssim(np.clip(astronaut + s * noise, 0, 255).astype(np.uint8), astronaut)
              for s in (2, 10, 30)]
    assert values[0] > values[1] > values[2] > 0


def test_registry_knows_modes_directions_and_rejects_unknown_options(small_photo):
    assert set(metrics.list_metrics("NR")) >= {"niqe", "piqe", "brisque"}
    assert set(metrics.list_metrics("FR")) >= {"psnr", "ssim", "ms_ssim", "lpips", "dists"}
    m = metrics.create_metric("psnr", crop_border=2)
    assert (m.name, m.mode, m.lower_better) == ("psnr", "FR", False)
    assert m(small_photo, small_photo) == math.inf
    assert metrics.create_metric("NIQE").lower_better
    with pytest.raises(ValueError, match="unknown metric"):
        metrics.create_metric("psnrx")
    with pytest.raises(ValueError, match="no option"):
        metrics.create_metric("ssim", window=7)
    with pytest.raises(TypeError, match=r"psnr\(pred, ref\)"):
        m(small_photo)
