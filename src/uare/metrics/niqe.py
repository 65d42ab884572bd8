"""NIQE (Mittal, Soundararajan, Bovik 2013), consistent with the MATLAB release.

Protocol (as the MATLAB code and BasicSR): luma rounded to integers, cropped to whole
96x96 blocks from the top-left, MSCN with replicate borders, 18 features per block per
scale (AGGD of the MSCN and of its four neighbour products, circularly shifted within
the block), a second scale from MATLAB bicubic x0.5 with antialiasing (not re-rounded,
48x48 blocks), then the Mahalanobis-like distance between the image's feature Gaussian
and the pristine model shipped in data/niqe_pris_params.npz (see data/NOTICE.txt).
All blocks count: the 0.75 sharpness threshold only applies when building the model.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy.special import gamma

from .color import rgb_to_y
from .inputs import MetricInputError, crop, to_batch
from .nss import aggd_fit, mscn, to_blocks
from .resize import imresize

BLOCK = 96
PARAMS_FILE = Path(__file__).parent / "data" / "niqe_pris_params.npz"
SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))


@lru_cache(maxsize=1)
def pristine_params() -> tuple[np.ndarray, np.ndarray]:
    """(mu (36,), cov (36,36)) of the pristine model."""
    with np.load(PARAMS_FILE) as d:
        return d["mu_pris_param"].reshape(-1), d["cov_pris_param"]


def shifted_products(blocks: np.ndarray) -> np.ndarray:
    """(n, b, b) -> (n, 4, b, b): each block times itself circularly shifted (within the
    block) by SHIFTS, i.e. blocks * np.roll(blocks, shift, axis=(1, 2)), written straight
    into one array without the rolled copies."""
    out = np.empty((len(blocks), len(SHIFTS)) + blocks.shape[1:])
    for k, (dy, dx) in enumerate(SHIFTS):
        rolled = out[:, k]
        # rolled[i, j] = blocks[i - dy, j - dx] (indices modulo b): copy in at most 4 pieces
        for ys, yd in _wrap(dy, blocks.shape[1]):
            for xs, xd in _wrap(dx, blocks.shape[2]):
                rolled[:, yd, xd] = blocks[:, ys, xs]
        rolled *= blocks
    return out


def _wrap(shift: int, size: int) -> list[tuple[slice, slice]]:
    """(source, destination) slice pairs of a circular shift by `shift` along one axis."""
    shift %= size
    if shift == 0:
        return [(slice(None), slice(None))]
    return [(slice(0, size - shift), slice(shift, size)), (slice(size - shift, size), slice(0, shift))]


def block_features(blocks: np.ndarray) -> np.ndarray:
    """(n, b, b) MSCN blocks -> (n, 18) NIQE features of one scale."""
    n = len(blocks)
    alpha, bl, br = aggd_fit(blocks.reshape(n, -1))
    feats = [alpha, (bl + br) / 2]
    a, l, r = aggd_fit(shifted_products(blocks).reshape(n * len(SHIFTS), -1))
    with np.errstate(invalid="ignore"):
        eta = (r - l) * gamma(2 / a) / gamma(1 / a)
    per_shift = np.stack([a, eta, l, r], axis=1).reshape(n, len(SHIFTS) * 4)
    return np.concatenate([np.stack(feats, axis=1), per_shift], axis=1)


def niqe_features(luma: np.ndarray) -> np.ndarray:
    """(H,W) luma on the 0-255 scale -> (n_blocks, 36) features over two scales."""
    h, w = luma.shape
    nh, nw = h // BLOCK, w // BLOCK
    if nh * nw < 2:
        raise MetricInputError(
            f"NIQE needs at least two {BLOCK}x{BLOCK} blocks (e.g. 192x96 pixels after cropping), got {w}x{h}")
    img = luma[: nh * BLOCK, : nw * BLOCK]
    scales = []
    for scale in (1, 2):
        scales.append(block_features(to_blocks(mscn(img), BLOCK // scale, BLOCK // scale)))
        if scale == 1:
            img = imresize(img, 0.5)
    return np.concatenate(scales, axis=1)


def niqe_score(features: np.ndarray) -> float:
    """Distance between the features' Gaussian and the pristine one (NaN rows ignored)."""
    mu_p, cov_p = pristine_params()
    mu_d = np.nanmean(features, axis=0)
    clean = features[~np.isnan(features).any(axis=1)]
    if len(clean) < 2:
        raise MetricInputError("NIQE: fewer than two blocks have finite features (flat image?)")
    cov_d = np.cov(clean, rowvar=False)
    diff = mu_p - mu_d
    return float(np.sqrt(diff @ np.linalg.pinv((cov_p + cov_d) / 2) @ diff))


def niqe(image, crop_border: int = 0, convention: str = "sr"):
    """NIQE, lower is better; a float, or an (N,) array for a batch.

    convention="sr" (BasicSR/MATLAB-release protocol) takes the BT.601 limited-range Y;
    "pyiqa" takes the YIQ Y (MATLAB rgb2gray). Both round the luma before scoring.
    """
    space = {"sr": "ycbcr", "basicsr": "ycbcr", "matlab": "ycbcr", "pyiqa": "yiq"}.get(convention)
    if space is None:
        raise ValueError(f"unknown convention {convention!r}; choose sr, matlab or pyiqa")
    batch = to_batch(image)
    luma = crop(rgb_to_y(batch.pixels, space, rounded=True), crop_border)
    return batch.result([niqe_score(niqe_features(y)) for y in luma])
