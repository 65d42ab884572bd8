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
def resize_taps(in_len: int, out_len: int, scale: float, antialias: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """MATLAB's contributions along one axis: (indices, weights), each (out_len, taps);
    output sample i = sum_k weights[i, k] * input[indices[i, k]] (0-based, mirrored)."""
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
    return np.where(m >= in_len, 2 * in_len - 1 - m, m), w


def resize_matrix(in_len: int, out_len: int, scale: float, antialias: bool = True) -> np.ndarray:
    """The same contributions as a dense (out_len, in_len) matrix W: out = W @ in."""
    idx, w = resize_taps(in_len, out_len, scale, antialias)
    mat = np.zeros((out_len, in_len))
    np.add.at(mat, (np.repeat(np.arange(out_len), idx.shape[1]), idx.ravel()), w.ravel())
    return mat


def _resize_axis(img: np.ndarray, axis: int, out_len: int, scale: float, antialias: bool) -> np.ndarray:
    """Gather the ~10 taps per output sample and weight them: O(taps) per sample, where a
    dense matrix product would cost O(input length)."""
    idx, w = resize_taps(img.shape[axis], out_len, scale, antialias)
    img = np.moveaxis(img, axis, -1)
    out = np.einsum("...ot,ot->...o", img[..., idx], w)
    return np.moveaxis(out, -1, axis)


def imresize(img: np.ndarray, scale: float, antialias: bool = True) -> np.ndarray:
    """Resize the last two axes of (..., H, W) float images by `scale`, MATLAB-style.

    The output is (..., ceil(H*scale), ceil(W*scale)), float64, not rounded or clipped.
    """
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    h, w = img.shape[-2:]
    out_h, out_w = int(math.ceil(h * scale)), int(math.ceil(w * scale))
    img = np.asarray(img, dtype=np.float64)
    img = _resize_axis(img, img.ndim - 2, out_h, float(scale), antialias)
    return _resize_axis(img, img.ndim - 1, out_w, float(scale), antialias)


@lru_cache(maxsize=64)
def opencv_cubic_matrix(in_len: int, out_len: int, inv_scale: float) -> np.ndarray:
    """(out_len, in_len) weights of OpenCV's INTER_CUBIC resize along one axis.

    OpenCV samples source position (x + 0.5) / inv_scale - 0.5 with the a = -0.75 cubic,
    no antialiasing, and clamps taps at the borders. Needed to reproduce features of
    models trained with cv2.resize (the `brisque` package's SVR)."""
    a = -0.75
    sx = (np.arange(out_len) + 0.5) / inv_scale - 0.5
    s0 = np.floor(sx)
    frac = sx - s0
    mat = np.zeros((out_len, in_len))
    rows = np.arange(out_len)
    for k in range(4):
        t = np.abs(frac - (k - 1))
        w = np.where(t <= 1, (a + 2) * t ** 3 - (a + 3) * t ** 2 + 1,
                     np.where(t < 2, a * t ** 3 - 5 * a * t ** 2 + 8 * a * t - 4 * a, 0.0))
        np.add.at(mat, (rows, np.clip(s0 + k - 1, 0, in_len - 1).astype(np.int64)), w)
    return mat


def opencv_resize_half(img: np.ndarray) -> np.ndarray:
    """cv2.resize(img, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_CUBIC) for (H,W) float
    images; the output size rounds half to even, as OpenCV does."""
    h, w = img.shape
    out_h, out_w = round(h * 0.5), round(w * 0.5)
    return opencv_cubic_matrix(h, out_h, 0.5) @ img @ opencv_cubic_matrix(w, out_w, 0.5).T
