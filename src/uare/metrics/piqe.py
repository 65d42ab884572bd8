"""PIQE (Venkatanath et al., NCC 2015), following MATLAB's `piqe` (R2018b+).

The image is padded (replicate, bottom/right) to whole 16x16 blocks, turned into MATLAB
rgb2gray luma rounded to integers, and MSCN-normalised (7x7 Gaussian, sigma 7/6,
replicate borders, C = 1). A block whose MSCN variance exceeds 0.1 is "active". An
active block with noticeable artifacts (some 6-pixel segment of one of its four edges
has a standard deviation below 0.1) adds 1 - variance; one that looks noisy (block sigma
> 2 * beta, beta comparing the sigma with a centre/surround deviation ratio) adds the
variance. Score = 100 (sum + 1) / (active blocks + 1): 0 is best, 100 worst; a flat
image scores 100. All blocks are processed at once.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .inputs import crop, to_batch
from .nss import mscn, to_blocks

BLOCK = 16
ACTIVITY_THRESHOLD = 0.1
IMPAIRED_THRESHOLD = 0.1
SEGMENT = 6
# MATLAB rgb2gray: the first row of the inverse of the NTSC YIQ -> RGB matrix.
_GREY = np.linalg.inv(np.array([[1.0, 0.956, 0.621], [1.0, -0.272, -0.647], [1.0, -1.106, 1.703]]))[0]
# MATLAB's centre/surround split deletes column 8 and then column 9 of the already
# shortened block, i.e. original columns 8 and 10 (1-based); kept for identical scores.
_CENTRE = [7, 8]
_SURROUND = [c for c in range(BLOCK) if c not in (7, 9)]


def _pad_to_blocks(img: np.ndarray) -> np.ndarray:
    h, w = img.shape
    return np.pad(img, ((0, -h % BLOCK), (0, -w % BLOCK)), mode="edge")


def _impaired(blocks: np.ndarray) -> np.ndarray:
    """(n,16,16) -> (n,) bool: some 6-pixel segment of an edge is nearly flat."""
    edges = np.stack([blocks[:, 0, :], blocks[:, :, -1], blocks[:, -1, :], blocks[:, :, 0]], axis=1)
    segments = sliding_window_view(edges, SEGMENT, axis=-1)  # (n, 4, 11, 6)
    return (segments.std(axis=-1, ddof=1) < IMPAIRED_THRESHOLD).any(axis=(1, 2))


def _noisy(blocks: np.ndarray, var: np.ndarray) -> np.ndarray:
    """(n,16,16), (n,) -> (n,) bool: MATLAB's noise criterion."""
    n = len(blocks)
    centre = blocks[:, :, _CENTRE].reshape(n, -1).std(axis=1, ddof=1)
    surround = blocks[:, :, _SURROUND].reshape(n, -1).std(axis=1, ddof=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.nan_to_num(centre / surround, nan=0.0, posinf=np.inf)
        sigma = np.sqrt(var)
        beta = np.abs(sigma - ratio) / np.maximum(sigma, ratio)
    return sigma > 2 * beta


def piqe_score(grey: np.ndarray) -> float:
    """(H,W) integer-valued luma on 0-255 -> PIQE score."""
    blocks = to_blocks(mscn(_pad_to_blocks(grey)), BLOCK, BLOCK)
    var = blocks.var(axis=(1, 2), ddof=1)
    active = var > ACTIVITY_THRESHOLD
    if not active.any():  # a flat image: MATLAB gives 100
        return 100.0
    blocks, var = blocks[active], var[active]
    distortion = np.where(_impaired(blocks), 1 - var, 0.0) + np.where(_noisy(blocks, var), var, 0.0)
    return float(100.0 * (distortion.sum() + 1.0) / (len(var) + 1.0))


def piqe(image, crop_border: int = 0):
    """PIQE score in [0, 100], lower is better; a float, or an (N,) array for a batch."""
    batch = to_batch(image)
    grey = np.floor(crop(batch.pixels, crop_border) @ _GREY + 0.5)  # MATLAB rounds half away from 0
    return batch.result([piqe_score(g) for g in grey])
