"""uare.fidelity: the noise level of an input, and the share of a denoiser's change to keep."""
import numpy as np
import pytest
import torch

from uare.fidelity import auto_mix, noise_sigma


def _t(a: np.ndarray) -> torch.Tensor:
    """HxWx3 in 0..255 -> (3, H, W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32) / 255).permute(2, 0, 1)


def _sigma(a: np.ndarray) -> float:
    return noise_sigma(_t(a)) * 255


@pytest.mark.parametrize("sigma", [2.0, 8.0, 25.0, 50.0])
def test_noise_sigma_reads_white_noise_on_a_photo(astronaut, sigma):
    clean = astronaut[:256, :256].astype(np.float32)
    own = _sigma(clean)
    assert 1.0 < own < 2.5   # the scan's own grain (flat sky reads 0.5), not its edges
    noisy = np.clip(clean + np.random.default_rng(1).normal(0, sigma, clean.shape), 0, 255)
    # added noise adds in quadrature to the grain; the median ignores most edges and
    # texture (what is left reads weak noise up to ~13% high: 3.17 for 2.81 here)
    assert _sigma(noisy) == pytest.approx(np.hypot(sigma, own), rel=0.15)


def test_noise_sigma_ignores_smooth_content():
    y, x = np.mgrid[0:64, 0:80].astype(np.float32)
    ramp = np.stack([x * 2, y * 3, x * y / 40], -1)   # planes and a gentle curve
    assert _sigma(ramp) < 1e-3
    with pytest.raises(ValueError, match="3x3"):
        noise_sigma(torch.zeros(3, 2, 8))


def test_auto_mix_keeps_the_share_of_the_change_that_is_noise(astronaut):
    clean = astronaut[:192, :192].astype(np.float32)
    rng = np.random.default_rng(2)
    noisy = clean + rng.normal(0, 10, clean.shape).astype(np.float32)
    # a perfect denoiser's change is all noise: keep all of it
    assert auto_mix(_t(clean), _t(noisy)) == pytest.approx(1.0)
    # one that also invents as much again (uncorrelated): keep about half, and that half is
    # closer to the original than either end
    wrong = clean + rng.normal(0, 10, clean.shape).astype(np.float32)
    a = auto_mix(_t(wrong), _t(noisy))
    assert 0.35 < a < 0.65
    err = lambda z: float(((z - clean) ** 2).mean())
    assert err(noisy + a * (wrong - noisy)) < 0.8 * min(err(noisy), err(wrong))
    # no change at all, or an image too small to read: the output is left as it is
    assert auto_mix(_t(noisy), _t(noisy)) == 1.0
    assert auto_mix(torch.ones(3, 2, 2), torch.zeros(3, 2, 2)) == 1.0


def test_noise_sigma_leaves_out_clipped_pixels(astronaut):
    # a third of the photo blown out to white and crushed to black: noise there is clipped
    # away, and counting it read heavy noise far too low
    clean = astronaut[:240, :240].astype(np.float32)
    clean[:80] = 255.0
    clean[160:] = 0.0
    noisy = np.clip(clean + np.random.default_rng(3).normal(0, 30, clean.shape), 0, 255)
    own = _sigma(astronaut[80:160, :240].astype(np.float32))
    assert _sigma(noisy) == pytest.approx(np.hypot(30, own), rel=0.12)
