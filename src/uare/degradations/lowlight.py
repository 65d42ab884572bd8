"""Low light: less exposure and a steeper tone curve, then the sensor noise that a dark
capture amplifies (shot noise grows relative to the signal, read noise stays).

The tone step works in linear light (sRGB decoded with gamma 2.2), where exposure is a
plain multiplication, then re-encodes with the extra gamma that crushes the shadows.
"""
from __future__ import annotations

import numpy as np
import torch

from .noise import gaussian_noise, poisson_noise

EXPOSURE = (0.6, 0.08)     # linear-light gain, severity 0 -> 1
GAMMA = (1.1, 2.0)         # extra tone-curve exponent
SHOT_SCALE = (0.2, 1.5)    # Poisson multiplier at the dark level
READ_SIGMA = (1.0, 6.0)    # Gaussian read noise, 0-255 scale
SRGB_GAMMA = 2.2


def _lerp(r: tuple[float, float], s: float) -> float:
    return r[0] + (r[1] - r[0]) * s


def plan_lowlight(severity: float, rng: np.random.Generator) -> list[dict]:
    return [
        {"type": "lowlight", "op": "exposure_gamma",
         "params": {"exposure": _lerp(EXPOSURE, severity), "gamma": _lerp(GAMMA, severity)}},
        {"type": "lowlight", "op": "sensor_noise",
         "params": {"shot_scale": _lerp(SHOT_SCALE, severity), "read_sigma": _lerp(READ_SIGMA, severity)}},
    ]


def exposure_gamma(x: torch.Tensor, exposure: float, gamma: float) -> torch.Tensor:
    linear = torch.clamp(x, 0, 1) ** SRGB_GAMMA
    return torch.clamp(linear * exposure, 0, 1) ** (gamma / SRGB_GAMMA)


def apply_lowlight(x: torch.Tensor, op: str, params: dict, gen: torch.Generator) -> torch.Tensor:
    if op == "exposure_gamma":
        return exposure_gamma(x, params["exposure"], params["gamma"])
    if op == "sensor_noise":
        n = poisson_noise(x, params["shot_scale"], False, gen)
        n = n + gaussian_noise(x, params["read_sigma"], False, gen)
        return torch.clamp(x + n, 0, 1)
    raise ValueError(f"unknown lowlight op {op!r}")


def lowlight_severity(params: dict) -> float:
    lo, hi = EXPOSURE
    return float(np.clip((params["exposure"] - lo) / (hi - lo), 0, 1))
