"""Single-type blur: isotropic/anisotropic Gaussian (out of focus, lens softness), linear
motion (camera shake) and defocus disk, each scaled by severity."""
from __future__ import annotations

import math

import numpy as np
import torch

from .kernels import kernel_from_params
from .ops import filter2d

BLUR_OPS = ("gaussian_iso", "gaussian_aniso", "motion", "defocus")
SIGMA = (0.5, 4.0)       # Gaussian major-axis sigma, pixels
MOTION_LENGTH = (3.0, 30.0)
DEFOCUS_RADIUS = (1.0, 8.0)


def _lerp(r: tuple[float, float], s: float) -> float:
    return r[0] + (r[1] - r[0]) * s


def _gaussian_size(sigma: float) -> int:
    return 2 * int(math.ceil(3.0 * sigma)) + 1


def plan_blur(severity: float, rng: np.random.Generator) -> list[dict]:
    """Draw the blur kind; its size (sigma, length, radius) grows linearly with severity."""
    op = str(BLUR_OPS[rng.integers(len(BLUR_OPS))])
    if op == "gaussian_iso":
        s = _lerp(SIGMA, severity)
        params = {"size": _gaussian_size(s), "sigma_x": s, "sigma_y": s, "theta": 0.0}
    elif op == "gaussian_aniso":
        s = _lerp(SIGMA, severity)
        minor = max(0.3, s * float(rng.uniform(0.25, 0.75)))
        params = {"size": _gaussian_size(s), "sigma_x": s, "sigma_y": minor,
                  "theta": float(rng.uniform(-math.pi, math.pi))}
    elif op == "motion":
        params = {"length": _lerp(MOTION_LENGTH, severity), "angle": float(rng.uniform(0, math.pi))}
    else:
        params = {"radius": _lerp(DEFOCUS_RADIUS, severity)}
    return [{"type": "blur", "op": op, "params": params}]


def apply_blur(x: torch.Tensor, op: str, params: dict, gen: torch.Generator) -> torch.Tensor:
    return filter2d(x, kernel_from_params(op, params).to(x.device))


def kernel_severity(op: str, p: dict, sigma: tuple[float, float] = (0.2, 3.0)) -> float:
    """A [0, 1] strength for any kernel family: the kernel's geometric-mean sigma within
    its range, or how far the sinc cut-off sits below Nyquist."""
    if op == "sinc":
        return float(np.clip((math.pi - p["omega_c"]) / (math.pi - math.pi / 5), 0, 1))
    if op == "motion":
        return float(np.clip((p["length"] - MOTION_LENGTH[0]) / (MOTION_LENGTH[1] - MOTION_LENGTH[0]), 0, 1))
    if op == "defocus":
        return float(np.clip((p["radius"] - DEFOCUS_RADIUS[0]) / (DEFOCUS_RADIUS[1] - DEFOCUS_RADIUS[0]), 0, 1))
    if op in ("gaussian_iso", "gaussian_aniso"):
        sigma = SIGMA
        return float(np.clip((p["sigma_x"] - sigma[0]) / (sigma[1] - sigma[0]), 0, 1))
    g = math.sqrt(p["sigma_x"] * p["sigma_y"])
    return float(np.clip((g - sigma[0]) / (sigma[1] - sigma[0]), 0, 1))
