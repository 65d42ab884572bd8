import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from uare.color_fix import color_fix, low_band


def _smooth(h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(3, h // 16 + 2, w // 16 + 2, generator=g)
    return torch.nn.functional.interpolate(x[None], size=(h, w), mode="bicubic", align_corners=False)[0]


@pytest.mark.parametrize("sigma", [1.5, 4.0, 9.0, 16.0])
def test_low_band_is_a_gaussian_blur(sigma):
    # short kernels as shifted multiply-adds, long ones as banded products: both SciPy's
    x = _smooth(150, 230) + 0.02 * torch.rand(3, 150, 230)
    ref = np.stack([gaussian_filter(c, sigma, mode="mirror", truncate=3) for c in x.numpy()])
    got = low_band(x, sigma).numpy()
    r = int(3 * sigma)
    inner = np.s_[:, r:-r, r:-r]
    assert got.shape == ref.shape
    assert np.abs(got - ref)[inner].max() < 1e-5
    assert np.abs(got - x.numpy())[inner].max() > 1e-2  # and it does blur


def test_color_fix_takes_the_inputs_tone_and_keeps_the_outputs_detail():
    ref = (0.25 + 0.5 * _smooth(128, 160)).clamp(0.1, 0.9)
    yy, xx = torch.meshgrid(torch.arange(128.0), torch.arange(160.0), indexing="ij")
    detail = 0.05 * torch.sin(xx * 2.5) * torch.cos(yy * 2.1)     # period ~2.5 px
    cast = torch.tensor([0.06, -0.05, 0.03])[:, None, None] + 0.03 * yy / 128.0  # colour and a ramp
    out = ref + cast + detail
    fixed = color_fix(out, ref, 16.0)
    inner = np.s_[:, 48:-48, 48:-48]       # the ramp is reflected at the borders
    assert (out - ref - detail)[inner].abs().mean() > 0.03
    # the cast is gone and the detail kept (its low band is nil)
    assert (fixed - ref - detail)[inner].abs().max() < 2e-3
    assert fixed.min() >= 0 and fixed.max() <= 1


def test_color_fix_refuses_bad_input():
    with pytest.raises(ValueError, match="differ in shape"):
        color_fix(torch.zeros(3, 8, 8), torch.zeros(3, 8, 9), 4.0)
    with pytest.raises(ValueError, match="positive"):
        low_band(torch.zeros(3, 8, 8), 0.0)


def test_low_band_handles_tiny_and_batched_images():
    x = torch.rand(2, 3, 5, 7)
    y = low_band(x, 16.0)
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert torch.allclose(y[1], low_band(x[1], 16.0), atol=1e-6)
