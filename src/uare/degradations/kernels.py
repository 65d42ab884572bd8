"""Blur kernels: Gaussian family (isotropic, anisotropic, generalized, plateau), circular
sinc, linear motion and defocus disk, built from plain parameter dicts.

Parameters live in records (JSON), kernels are rebuilt from them when applied, so a
record alone says exactly which kernel was used. Every kernel is a centred (k, k) float32
tensor with k odd that sums to 1.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import special

GAUSSIAN_FAMILIES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso",
                     "plateau_aniso")


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    r = size // 2
    t = np.arange(-r, r + 1, dtype=np.float64)
    return np.meshgrid(t, t, indexing="xy")  # xx varies along columns, yy along rows


def _normalise(k: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(k / k.sum()).float()


def gaussian_family_kernel(size: int, sigma_x: float, sigma_y: float, theta: float,
                           beta: float = 1.0, shape: str = "gaussian") -> torch.Tensor:
    """exp(-q/2) (gaussian), exp(-q^β/2) (generalized) or 1/(1+q^β) (plateau), where
    q = xᵀΣ⁻¹x and Σ = R(θ) diag(σx², σy²) R(θ)ᵀ."""
    xx, yy = _grid(size)
    c, s = math.cos(theta), math.sin(theta)
    # Rotate the grid into the kernel's principal axes: q = u²/σx² + v²/σy².
    u = c * xx + s * yy
    v = -s * xx + c * yy
    q = (u / sigma_x) ** 2 + (v / sigma_y) ** 2
    if shape == "gaussian":
        k = np.exp(-0.5 * q)
    elif shape == "generalized":
        k = np.exp(-0.5 * q ** beta)
    elif shape == "plateau":
        k = 1.0 / (1.0 + q ** beta)
    else:
        raise ValueError(f"kernel shape {shape!r}: expected gaussian, generalized or plateau")
    return _normalise(k)


def sinc_kernel(size: int, omega_c: float, pad_to: int = 0) -> torch.Tensor:
    """Ideal circular low-pass: ω_c J1(ω_c r) / (2π r), with its limit ω_c²/(4π) at r = 0."""
    xx, yy = _grid(size)
    r = np.hypot(xx, yy)
    with np.errstate(divide="ignore", invalid="ignore"):
        k = omega_c * special.j1(omega_c * r) / (2 * np.pi * r)
    k[r == 0] = omega_c ** 2 / (4 * np.pi)
    k = k / k.sum()
    if pad_to > size:
        p = (pad_to - size) // 2
        k = np.pad(k, p)
    return torch.from_numpy(k).float()


def motion_kernel(length: float, angle: float) -> torch.Tensor:
    """A straight camera-shake streak of `length` pixels at `angle` radians, drawn with
    sub-pixel sampling so short lengths stay smooth."""
    r = max(1, int(math.ceil(length / 2)))
    size = 2 * r + 1
    t = np.linspace(-length / 2, length / 2, max(2, int(length * 8)))
    xs, ys = t * math.cos(angle), -t * math.sin(angle)
    k = np.zeros((size, size))
    # Bilinear splatting of the sample points onto the grid.
    x0, y0 = np.floor(xs).astype(int), np.floor(ys).astype(int)
    fx, fy = xs - x0, ys - y0
    for dx, dy, wgt in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)),
                        (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        cols = np.clip(x0 + dx + r, 0, size - 1)
        rows = np.clip(y0 + dy + r, 0, size - 1)
        np.add.at(k, (rows, cols), wgt)
    return _normalise(k)


def disk_kernel(radius: float) -> torch.Tensor:
    """Defocus: a uniform disk with anti-aliased rim (coverage of each pixel)."""
    r = max(1, int(math.ceil(radius)))
    xx, yy = _grid(2 * r + 1)
    dist = np.hypot(xx, yy)
    k = np.clip(radius + 0.5 - dist, 0.0, 1.0)
    return _normalise(k)


def kernel_from_params(op: str, p: dict) -> torch.Tensor:
    """Rebuild the kernel of a record's blur step (op is the kernel family)."""
    if op == "sinc":
        return sinc_kernel(p["size"], p["omega_c"])
    if op in GAUSSIAN_FAMILIES or op in ("gaussian_iso", "gaussian_aniso"):
        shape = ("generalized" if op.startswith("generalized") else
                 "plateau" if op.startswith("plateau") else "gaussian")
        return gaussian_family_kernel(p["size"], p["sigma_x"], p["sigma_y"], p["theta"],
                                      p.get("beta", 1.0), shape)
    if op == "motion":
        return motion_kernel(p["length"], p["angle"])
    if op == "defocus":
        return disk_kernel(p["radius"])
    raise ValueError(f"unknown blur kernel {op!r}")


@dataclass(frozen=True)
class KernelConfig:
    """Real-ESRGAN's random blur kernel (one stage): family probabilities and ranges."""
    families: tuple[str, ...] = GAUSSIAN_FAMILIES
    family_probs: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    sigma: tuple[float, float] = (0.2, 3.0)
    betag: tuple[float, float] = (0.5, 4.0)
    betap: tuple[float, float] = (1.0, 2.0)
    sinc_prob: float = 0.1
    sizes: tuple[int, ...] = (7, 9, 11, 13, 15, 17, 19, 21)

    def __post_init__(self):
        if len(self.families) != len(self.family_probs) or abs(sum(self.family_probs) - 1) > 1e-6:
            raise ValueError("KernelConfig: family_probs must match families and sum to 1")


def _beta(rng: np.random.Generator, low: float, high: float) -> float:
    # Half the time below 1 (flatter than Gaussian tails), half above.
    return float(rng.uniform(low, 1.0) if rng.uniform() < 0.5 else rng.uniform(1.0, high))


def sample_kernel(rng: np.random.Generator, cfg: KernelConfig) -> tuple[str, dict]:
    """Draw one kernel: (family, params). Always consumes the same number of draws per
    branch, so records can be sampled without images."""
    size = int(rng.choice(cfg.sizes))
    if rng.uniform() < cfg.sinc_prob:
        lo = math.pi / 3 if size < 13 else math.pi / 5
        return "sinc", {"size": size, "omega_c": float(rng.uniform(lo, math.pi))}
    family = str(cfg.families[rng.choice(len(cfg.families), p=cfg.family_probs)])
    sx = float(rng.uniform(*cfg.sigma))
    if family.endswith("iso") and not family.endswith("aniso"):
        sy, theta = sx, 0.0
    else:
        sy, theta = float(rng.uniform(*cfg.sigma)), float(rng.uniform(-math.pi, math.pi))
    params = {"size": size, "sigma_x": sx, "sigma_y": sy, "theta": theta}
    if family.startswith("generalized"):
        params["beta"] = _beta(rng, *cfg.betag)
    elif family.startswith("plateau"):
        params["beta"] = _beta(rng, *cfg.betap)
    return family, params
