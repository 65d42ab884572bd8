"""Natural-scene-statistics building blocks shared by NIQE, BRISQUE and PIQE.

Everything here works on many blocks at once: a fit takes an (n, m) array of n sample
sets and returns n parameter values, so no metric loops over blocks in Python.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.ndimage import correlate1d
from scipy.special import gamma

from .psnr_ssim import gaussian_1d


def mscn(img: np.ndarray, mode: str = "nearest", c: float = 1.0) -> np.ndarray:
    """Mean-subtracted contrast-normalised coefficients of an (H,W) float image.

    7x7 Gaussian (sigma 7/6) local mean and deviation; `mode` is the border rule
    ('nearest' = MATLAB 'replicate', 'constant' = zero padding). sigma uses |E[x^2]-mu^2|
    so that rounding cannot make it imaginary. Returns (H,W) float64.
    """
    img = np.asarray(img, dtype=np.float64)
    g = gaussian_1d(7, 7.0 / 6.0)
    both = np.stack([img, img * img])
    mu, second = correlate1d(correlate1d(both, g, axis=1, mode=mode), g, axis=2, mode=mode)
    sigma = np.sqrt(np.abs(second - mu * mu))
    return (img - mu) / (sigma + c)


@lru_cache(maxsize=1)
def _aggd_grid() -> tuple[np.ndarray, np.ndarray]:
    """The shape grid 0.2:0.001:10 and r(a) = G(2/a)^2 / (G(1/a) G(3/a)), increasing in a."""
    alpha = np.arange(0.2, 10.001, 0.001)
    r = gamma(2 / alpha) ** 2 / (gamma(1 / alpha) * gamma(3 / alpha))
    return alpha, r


def _nearest_on_grid(target: np.ndarray) -> np.ndarray:
    """Grid alpha whose r(alpha) is closest to each target (first one on ties, like argmin)."""
    alpha, r = _aggd_grid()
    hi = np.clip(np.searchsorted(r, target), 1, len(r) - 1)
    lo = hi - 1
    pick_hi = (r[hi] - target) ** 2 < (r[lo] - target) ** 2
    out = alpha[np.where(pick_hi, hi, lo)]
    return np.where(np.isnan(target), np.nan, out)


def aggd_fit(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Asymmetric generalised Gaussian fit by moment matching on the 0.2:0.001:10 grid.

    x: (n, m) samples -> (alpha, beta_left, beta_right), each (n,). A set with no
    negative or no positive sample gives NaN, as the MATLAB code does.
    """
    x = np.asarray(x, dtype=np.float64)
    # Four passes over the data: |x|, x^2 and the negative part, with no boolean masks.
    sq_all = np.einsum("ij,ij->i", x, x)
    abs_mean = np.abs(x).mean(1)
    neg = np.minimum(x, 0.0)
    sq_neg = np.einsum("ij,ij->i", neg, neg)
    n_neg = np.count_nonzero(neg, axis=1)
    n_pos = np.count_nonzero(x, axis=1) - n_neg
    with np.errstate(invalid="ignore", divide="ignore"):
        left = np.sqrt(sq_neg / n_neg)
        right = np.sqrt((sq_all - sq_neg) / n_pos)
        ghat = left / right
        rhat = abs_mean ** 2 / (sq_all / x.shape[1])
        rnorm = rhat * (ghat ** 3 + 1) * (ghat + 1) / (ghat ** 2 + 1) ** 2
        alpha = _nearest_on_grid(rnorm)
        ratio = np.sqrt(gamma(1 / alpha) / gamma(3 / alpha))
    return alpha, left * ratio, right * ratio


def ggd_fit(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric generalised Gaussian fit: (n, m) -> (alpha, sigma^2), each (n,).

    Matches r(alpha) = E[|x|]^2 / E[x^2] on the same grid as `aggd_fit`."""
    x = np.asarray(x, dtype=np.float64)
    var = (x * x).mean(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.abs(x).mean(1) ** 2 / var
    return _nearest_on_grid(rho), var


def to_blocks(img: np.ndarray, bh: int, bw: int) -> np.ndarray:
    """(H,W) with H, W multiples of the block size -> (n_blocks, bh, bw), row-major."""
    h, w = img.shape
    return img.reshape(h // bh, bh, w // bw, bw).transpose(0, 2, 1, 3).reshape(-1, bh, bw)
