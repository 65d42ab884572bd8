"""Sensor noise: additive Gaussian and signal-dependent Poisson (shot) noise, in colour
or grey (the same noise in all three channels)."""
from __future__ import annotations

import functools
import math

import numpy as np
import torch
from scipy import special

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


def _poisson_levels(codes: torch.Tensor) -> int:
    """2^ceil(log2(#distinct 8-bit values)) of int64 codes: the photon scale Real-ESRGAN
    derives from the image itself. A histogram counts the values without sorting."""
    distinct = int((torch.bincount(codes.flatten(), minlength=256) > 0).sum())
    return 2 ** math.ceil(math.log2(max(distinct, 1)))


# Support of the Poisson tables: the mass beyond vals + 12·sqrt(vals) + 40 is below 1e-30
# for every level, far under float64 resolution of the probabilities.
def _poisson_support(vals: int) -> int:
    return int(vals + 12 * math.sqrt(vals) + 40)


@functools.lru_cache(maxsize=None)
def _poisson_alias(vals: int) -> tuple[np.ndarray, np.ndarray]:
    """Walker alias tables of Poisson(λ_c) for the 256 8-bit codes c, λ_c = (c/255)·vals
    with c/255 in float32 as the image holds it. Returns (threshold, alias), each of
    shape (256 · K,), row c at c·K (the aliases as float32 counts): sampling is one uniform and two lookups per pixel,
    where numpy's own sampler spends about 70 ns. Built once per vals (a power of two
    up to 256, so at most nine tables) with Vose's method in float64."""
    k = _poisson_support(vals)
    lam = (np.arange(256, dtype=np.float32) / np.float32(255.0)).astype(np.float64) * vals
    n = np.arange(k)
    with np.errstate(divide="ignore", invalid="ignore"):  # λ = 0, set below
        logp = n[None, :] * np.log(lam[:, None]) - lam[:, None] - special.gammaln(n + 1)[None, :]
    pmf = np.exp(logp)
    pmf[0] = 0.0
    pmf[0, 0] = 1.0  # λ = 0: always zero photons
    pmf /= pmf.sum(axis=1, keepdims=True)
    threshold = np.ones((256, k))
    alias = np.tile(np.arange(k), (256, 1))
    for c in range(256):
        scaled = (pmf[c] * k).tolist()
        small = [i for i, v in enumerate(scaled) if v < 1.0]
        large = [i for i, v in enumerate(scaled) if v >= 1.0]
        row_t, row_a = threshold[c], alias[c]
        while small and large:
            lo, hi = small.pop(), large.pop()
            row_t[lo], row_a[lo] = scaled[lo], hi
            scaled[hi] -= 1.0 - scaled[lo]
            (small if scaled[hi] < 1.0 else large).append(hi)
        # Whatever is left holds probability 1 up to rounding: threshold 1 (the default).
    return threshold.ravel(), alias.ravel().astype(np.float32)


def poisson_noise(x: torch.Tensor, scale: float, grey: bool, gen: torch.Generator) -> torch.Tensor:
    """Shot noise of the 8-bit-quantised image, times `scale`. x: (1, C, H, W) in [0, 1].
    Returns the noise only."""
    _, c, h, w = x.shape
    src = to_grey(x) if grey else x
    levels = torch.clamp(torch.round(src * 255.0), 0, 255)
    q = levels / 255.0
    codes = levels.to(torch.int64).cpu()
    vals = _poisson_levels(codes)
    # The uniforms come from a numpy stream seeded from `gen`, so the whole stream stays
    # one deterministic sequence. Each pixel draws Poisson(λ_code) exactly (to float64)
    # from its level's alias table: u·K splits into a column (integer part) and the
    # uniform that picks the column or its alias (fraction, at least 44 bits).
    rng = np.random.default_rng(int(torch.randint(0, 2 ** 62, (1,), generator=gen)))
    threshold, alias = _poisson_alias(vals)
    k = _poisson_support(vals)
    u = rng.random(codes.shape)
    u *= k
    col = np.floor(u)
    u -= col
    idx = codes.numpy() * k
    idx += col.astype(np.int64)
    counts = np.where(u < threshold[idx], col.astype(np.float32), alias[idx])
    noise = (torch.from_numpy(counts) / float(vals) - q.cpu()) * scale
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
