"""x4 down-sampling, the classical SR degradation y = (x ⊗ k)↓4.

Severity widens the Gaussian k applied before an anti-aliased bicubic decimation: at 0
the result is the clean bicubic x4 reduction, at 1 it is also visibly soft.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .ops import gaussian_1d, separable_blur

FACTOR = 4
PREFILTER_SIGMA = (0.0, 2.0)  # pixels of the input image


def plan_downsample(severity: float, rng: np.random.Generator) -> list[dict]:
    lo, hi = PREFILTER_SIGMA
    return [{"type": "downsample", "op": "bicubic", "params": {
        "factor": FACTOR, "antialias": True, "prefilter_sigma": lo + (hi - lo) * severity}}]


def downsampled_size(h: int, w: int, factor: int = FACTOR) -> tuple[int, int]:
    if h < factor or w < factor:
        raise ValueError(f"image of {w}x{h} is too small to down-sample x{factor}")
    return h // factor, w // factor


def apply_downsample(x: torch.Tensor, op: str, params: dict, gen: torch.Generator) -> torch.Tensor:
    if op != "bicubic":
        raise ValueError(f"unknown downsample op {op!r}")
    sigma = params["prefilter_sigma"]
    if sigma > 0.05:
        x = separable_blur(x, gaussian_1d(sigma, max(1, int(math.ceil(3 * sigma)))))
    size = downsampled_size(*x.shape[-2:], params["factor"])
    return torch.clamp(F.interpolate(x, size=size, mode="bicubic", align_corners=False,
                                     antialias=params.get("antialias", True)), 0, 1)


def downsample_severity(params: dict) -> float:
    lo, hi = PREFILTER_SIGMA
    return float(np.clip((params["prefilter_sigma"] - lo) / (hi - lo), 0, 1))
