"""BRISQUE (Mittal, Moorthy, Bovik 2012) with the model of the `brisque` package.

The shipped model (data/brisque_svm.npz, Apache-2.0, see data/NOTICE.txt) is an
epsilon-SVR with an RBF kernel trained on that package's own features, so the features
here follow that package, not the MATLAB release: luma from skimage's rgb2gray (BT.709
weights, [0, 1]); MSCN with a 7x7 Gaussian (sigma 7/6), zero padding and C = 1/255; an
AGGD fit with a continuous shape (root of r(a) = R, not a grid) on the MSCN and on its
four neighbour products (non-circular); the second scale from OpenCV's bicubic x0.5.
Score = sum_i coef_i exp(-gamma |x - sv_i|^2) - rho on features min-max scaled to
[-1, 1]; about 0-100, lower is better.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy.special import gamma, gammaln

from .inputs import MetricInputError, crop, to_batch
from .nss import mscn
from .resize import opencv_resize_half

MODEL_FILE = Path(__file__).parent / "data" / "brisque_svm.npz"
BT709 = np.array([0.2125, 0.7154, 0.0721])  # skimage.color.rgb2gray


@lru_cache(maxsize=1)
def model() -> dict:
    with np.load(MODEL_FILE) as d:
        return {k: d[k] for k in d.files}


def _shape_from_ratio(target: np.ndarray, iters: int = 80) -> np.ndarray:
    """Solve G(2/a)^2 / (G(1/a) G(3/a)) = target for a by bisection on log a.

    The ratio increases monotonically in a, so bisection finds the one root that the
    package's scipy.optimize.root finds. (n,) -> (n,)."""
    def log_ratio(a):
        return 2 * gammaln(2 / a) - gammaln(1 / a) - gammaln(3 / a)

    lo = np.full(target.shape, np.log(0.05))
    hi = np.full(target.shape, np.log(50.0))
    goal = np.log(target)
    for _ in range(iters):
        mid = (lo + hi) / 2
        above = log_ratio(np.exp(mid)) > goal
        hi, lo = np.where(above, mid, hi), np.where(above, lo, mid)
    return np.exp((lo + hi) / 2)


def aggd_features(samples: list[np.ndarray]) -> np.ndarray:
    """AGGD fit of each 1-D sample set -> (n, 4): alpha, mean, sigma_l^2, sigma_r^2.
    Zeros count on the right side, as in the package."""
    left = np.array([np.mean(s[s < 0] ** 2) for s in samples])
    right = np.array([np.mean(s[s >= 0] ** 2) for s in samples])
    r_hat = np.array([np.mean(np.abs(s)) ** 2 / np.mean(s * s) for s in samples])
    g = np.sqrt(left) / np.sqrt(right)
    alpha = _shape_from_ratio(r_hat * (g ** 3 + 1) * (g + 1) / (g ** 2 + 1) ** 2)
    const = np.sqrt(gamma(1 / alpha) / gamma(3 / alpha))
    mean = (np.sqrt(right) - np.sqrt(left)) * const * gamma(2 / alpha) / gamma(1 / alpha)
    return np.stack([alpha, mean, left, right], axis=1)


def scale_features(luma: np.ndarray) -> np.ndarray:
    """(H,W) luma in [0, 1] -> 18 features of one scale."""
    m = mscn(luma, mode="constant", c=1.0 / 255.0)
    sets = [m, m[:, :-1] * m[:, 1:], m[:-1, :] * m[1:, :], m[:-1, :-1] * m[1:, 1:], m[1:, :-1] * m[:-1, 1:]]
    fits = aggd_features([s.ravel() for s in sets])
    first = [fits[0, 0], (fits[0, 2] + fits[0, 3]) / 2]
    return np.concatenate([first, fits[1:].ravel()])


def brisque_features(luma: np.ndarray) -> np.ndarray:
    """(H,W) luma in [0, 1] -> the 36 features (two scales)."""
    if min(luma.shape) < 16:
        raise MetricInputError(f"BRISQUE needs images of at least 16x16 pixels, got {luma.shape[1]}x{luma.shape[0]}")
    return np.concatenate([scale_features(luma), scale_features(opencv_resize_half(luma))])


def svr_score(features: np.ndarray) -> float:
    p = model()
    x = -1 + 2 * (features - p["feature_min"]) / (p["feature_max"] - p["feature_min"])
    dist2 = ((p["support_vectors"] - x) ** 2).sum(axis=1)
    return float(p["dual_coef"] @ np.exp(-p["gamma"] * dist2) - p["rho"])


def brisque(image, crop_border: int = 0):
    """BRISQUE score, lower is better; a float, or an (N,) array for a batch."""
    batch = to_batch(image)
    luma = crop(batch.pixels @ BT709 / 255.0, crop_border)
    return batch.result([svr_score(brisque_features(y)) for y in luma])
