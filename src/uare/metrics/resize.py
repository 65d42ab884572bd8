"""MATLAB-compatible `imresize` (bicubic, with antialiasing when shrinking).

NIQE's second scale and BRISQUE's second scale are defined with MATLAB's resize, so a
PIL or torch bicubic resize changes their scores. MATLAB's algorithm is separable: each
output sample is a weighted sum of input samples along one axis, with a cubic kernel
(a = -0.5) stretched by 1/scale when shrinking with antialiasing, and out-of-range
samples mirrored ("symmetric" padding). Writing each axis as a dense (out, in) weight
matrix turns the whole resize into two matrix products.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np


def _cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    near = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2))
    return near + far


@lru_cache(maxsize=64)
def resize_matrix(in_len: int, out_len: int, scale: float, antialias: bool = True) -> np.ndarray:
    """(out_len, in_len) float64 matrix W with out = W @ in along one axis, as MATLAB."""
    width = 4.0
    shrink_aa = scale < 1 and antialias
    if shrink_aa:
        width /= scale
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)  # centre of each output sample, 1-based input coords
    left = np.floor(u - width / 2)
    taps = int(math.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps)[None, :]  # (out, taps), 1-based
    dist = u[:, None] - idx
    w = scale * _cubic(dist * scale) if shrink_aa else _cubic(dist)
    w /= w.sum(axis=1, keepdims=True)
    # Mirror out-of-range taps back inside: MATLAB indexes aux = [1..n, n..1] cyclically.
    m = np.mod(idx - 1, 2 * in_len).astype(np.int64)
    m = np.where(m >= in_len, 2 * in_len - 1 - m, m)
    mat = np.zeros((out_len, in_len))
    np.add.at(mat, (np.repeat(np.arange(out_len), taps), m.ravel()), w.ravel())
    return mat


def imresize(img: np.ndarray, scale: float, antialias: bool = True) -> np.ndarray:
    """Resize the last two axes of (..., H, W) float images by `scale`, MATLAB-style.

    The output is (..., ceil(H*scale), ceil(W*scale)), float64, not rounded or clipped.
    """
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    h, w = img.shape[-2:]
    out_h, out_w = int(math.ceil(h * scale)), int(math.ceil(w * scale))
    wh = resize_matrix(h, out_h, float(scale), antialias)
    ww = resize_matrix(w, out_w, float(scale), antialias)
    return wh @ np.asarray(img, dtype=np.float64) @ ww.T
