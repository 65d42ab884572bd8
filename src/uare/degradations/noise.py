"""Sensor noise: additive Gaussian and signal-dependent Poisson (shot) noise, in colour
or grey (the same noise in all three channels)."""
from __future__ import annotations

import math

import numpy as np
import torch

from .ops import to_grey

# Single-type ranges (our choice; the paper gives none): sigma on the 0-255 scale and the
# Poisson multiplier, both linear in severity.
GAUSSIAN_SIGMA = (1.0, 50.0)
POISSON_SCALE = (0.25, 4.0)
GREY_PROB = 0.4


def gaussian_noise(x: torch.Tensor, sigma: float, grey: bool, gen: torch.Generator) -> torch.Tensor:
    """x: (1, C, H, W) in [0, 1]; sigma on the 0-255 scale. Returns the noise, not x + noise."""
    _, c, h, w = x.shape
    n = torch.randn((1, 1 if grey else c, h, w), generator=gen, dtype=torch.float32)
    return (n * (sigma / 255.0)).expand(1, c, h, w).to(x.device)


def _poisson_levels(q: torch.Tensor) -> float:
    """2^ceil(log2(#distinct 8-bit values)): the photon scale Real-ESRGAN derives from the
    image itself. A histogram counts the values without sorting the whole image."""
    codes = torch.round(q * 255.0).to(torch.int64).flatten().cpu()
    distinct = int((torch.bincount(codes, minlength=256) > 0).sum())
    return float(2 ** math.ceil(math.log2(max(distinct, 1))))


def poisson_noise(x: torch.Tensor, scale: float, grey: bool, gen: torch.Generator) -> torch.Tensor:
    """Shot noise of the 8-bit-quantised image, times `scale`. x: (1, C, H, W) in [0, 1].
    Returns the noise only."""
    _, c, h, w = x.shape
    src = to_grey(x) if grey else x
    q = torch.clamp(torch.round(src * 255.0), 0, 255) / 255.0
    vals = _poisson_levels(q)
    # numpy's Poisson sampler is about twice as fast as torch's on the CPU (measured);
    # its seed comes from `gen`, so the stream stays one deterministic sequence.
    rng = np.random.default_rng(int(torch.randint(0, 2 ** 62, (1,), generator=gen)))
    lam = (q * vals).cpu().numpy().astype(np.float64)
    counts = torch.from_numpy(rng.poisson(lam).astype(np.float32))
    noise = (counts / vals - q.cpu()) * scale
    return noise.expand(1, c, h, w).to(x.device)


def add_noise(x: torch.Tensor, op: str, params: dict, gen: torch.Generator) -> torch.Tensor:
    """Apply a record's noise step and clip to [0, 1] (no rounding, as Real-ESRGAN)."""
    if op == "gaussian":
        n = gaussian_noise(x, params["sigma"], params["grey"], gen)
    elif op == "poisson":
        n = poisson_noise(x, params["scale"], params["grey"], gen)
    else:
        raise ValueError(f"unknown noise op {op!r}")
    return torch.clamp(x + n, 0.0, 1.0)


def sample_noise(rng: np.random.Generator, gaussian_prob: float, sigma: tuple[float, float],
                 poisson_scale: tuple[float, float], grey_prob: float) -> tuple[str, dict]:
    """Real-ESRGAN's noise draw: Gaussian or Poisson, then grey or colour."""
    if rng.uniform() < gaussian_prob:
        op, params = "gaussian", {"sigma": float(rng.uniform(*sigma))}
    else:
        op, params = "poisson", {"scale": float(rng.uniform(*poisson_scale))}
    params["grey"] = bool(rng.uniform() < grey_prob)
    return op, params


def plan_noise(severity: float, rng: np.random.Generator) -> list[dict]:
    """Single-type noise: the kind is drawn, its strength follows severity linearly."""
    grey = bool(rng.uniform() < GREY_PROB)
    if rng.uniform() < 0.5:
        lo, hi = GAUSSIAN_SIGMA
        return [{"type": "noise", "op": "gaussian", "params": {"sigma": lo + (hi - lo) * severity, "grey": grey}}]
    lo, hi = POISSON_SCALE
    return [{"type": "noise", "op": "poisson", "params": {"scale": lo + (hi - lo) * severity, "grey": grey}}]


def noise_severity(op: str, params: dict, sigma: tuple[float, float] = GAUSSIAN_SIGMA,
                   poisson_scale: tuple[float, float] = POISSON_SCALE) -> float:
    lo, hi = sigma if op == "gaussian" else poisson_scale
    v = params["sigma"] if op == "gaussian" else params["scale"]
    return float(np.clip((v - lo) / (hi - lo), 0.0, 1.0))
