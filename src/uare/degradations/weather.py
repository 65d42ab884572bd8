"""Scene degradations: haze (atmospheric scattering), rain streaks and raindrops on the lens.

None of the reference repositories synthesises these (metrics-degradation-facts.md §5),
so the models below are the standard physical ones with ranges chosen to look like
FoundIR's captured haze/rain/raindrop categories from mild (severity 0) to heavy (1).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .kernels import motion_kernel
from .ops import filter2d, gaussian_1d, separable_blur, to_grey

HAZE_BETA = (0.4, 3.0)             # scattering coefficient over the [0.15, 1] depth proxy
RAIN_DENSITY = (0.001, 0.01)       # fraction of pixels that seed a streak
RAIN_LENGTH = (8.0, 40.0)          # streak length, pixels
RAIN_INTENSITY = (0.35, 0.8)
DROP_COUNT = (4, 30)
DROP_RADIUS = (0.02, 0.065)        # largest drop radius, fraction of the short side


def _lerp(r, s: float) -> float:
    return r[0] + (r[1] - r[0]) * s


# ---- haze -----------------------------------------------------------------------------

def plan_haze(severity: float, rng: np.random.Generator) -> list[dict]:
    level = float(rng.uniform(0.75, 0.95))
    tint = float(rng.uniform(0.0, 0.08))  # slightly bluish skylight
    airlight = [level * (1 - tint), level * (1 - tint / 2), level]
    return [{"type": "haze", "op": "atmospheric_scattering", "params": {
        "beta": _lerp(HAZE_BETA, severity), "airlight": airlight, "depth": "height+brightness"}}]


def depth_proxy(x: torch.Tensor) -> torch.Tensor:
    """(1, 3, H, W) -> (1, 1, H, W) relative depth in [0.15, 1].

    Without a depth map, two cues of outdoor photos: higher rows are farther away and
    large bright smooth regions are usually sky or distance. Smoothing keeps the
    transmission from copying texture."""
    _, _, h, w = x.shape
    rows = torch.linspace(1.0, 0.0, h, device=x.device).view(1, 1, h, 1).expand(1, 1, h, w)
    sigma = max(1.0, min(h, w) / 30.0)
    lum = separable_blur(to_grey(x), gaussian_1d(sigma, int(min(3 * sigma, min(h, w) - 1))))
    d = 0.6 * rows + 0.4 * lum
    d = (d - d.min()) / (d.max() - d.min() + 1e-6)
    return 0.15 + 0.85 * d


def apply_haze(x: torch.Tensor, op: str, params: dict, gen: torch.Generator) -> torch.Tensor:
    """I = J·t + A·(1 − t), t = exp(−β·d)."""
    t = torch.exp(-params["beta"] * depth_proxy(x))
    a = torch.tensor(params["airlight"], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return torch.clamp(x * t + a * (1 - t), 0, 1)


# ---- rain streaks -----------------------------------------------------------------------

def plan_rain(severity: float, rng: np.random.Generator) -> list[dict]:
    # Near-vertical fall, tilted by wind up to about 20 degrees either way.
    angle = math.pi / 2 + float(rng.uniform(-0.35, 0.35))
    return [{"type": "rain", "op": "streaks", "params": {
        "density": _lerp(RAIN_DENSITY, severity), "length": _lerp(RAIN_LENGTH, severity),
        "angle": angle, "intensity": _lerp(RAIN_INTENSITY, severity)}}]


def rain_layer(h: int, w: int, params: dict, gen: torch.Generator) -> torch.Tensor:
    """(1, 1, H, W) streak brightness in [0, 1]: random seeds smeared along the fall
    direction by a motion kernel rescaled so a streak keeps its seed's brightness."""
    seeds = (torch.rand((1, 1, h, w), generator=gen) < params["density"]).float()
    seeds = seeds * (0.5 + 0.5 * torch.rand((1, 1, h, w), generator=gen))
    k = motion_kernel(params["length"], params["angle"])
    layer = filter2d(seeds, (k / k.max())[None])
    layer = separable_blur(layer, gaussian_1d(0.6, 2))  # drops are a little wider than a pixel
    return torch.clamp(layer * params["intensity"] / 0.75, 0, 1)


def apply_rain(x: torch.Tensor, op: str, params: dict, gen: torch.Generator) -> torch.Tensor:
    r = rain_layer(x.shape[-2], x.shape[-1], params, gen).to(x.device)
    return x + r * (1 - x)  # screen blend: streaks add light, never darken


# ---- raindrops on the lens -----------------------------------------------------------------

def plan_raindrop(severity: float, rng: np.random.Generator) -> list[dict]:
    return [{"type": "raindrop", "op": "drops", "params": {
        "count": int(round(_lerp(DROP_COUNT, severity))),
        "radius_max": _lerp(DROP_RADIUS, severity), "blur_sigma": _lerp((2.0, 5.0), severity)}}]


def _drop_geometry(h: int, w: int, params: dict, gen: torch.Generator) -> torch.Tensor:
    """(count, 4): centre x, centre y, radius, vertical stretch for each drop."""
    n = params["count"]
    u = torch.rand((n, 4), generator=gen, dtype=torch.float64)
    rmax = params["radius_max"] * min(h, w)
    radius = torch.clamp(rmax * (0.35 + 0.65 * u[:, 2]), min=2.0)
    return torch.stack([u[:, 0] * w, u[:, 1] * h, radius, 1.0 + 0.3 * u[:, 3]], dim=1)


def apply_raindrop(x: torch.Tensor, op: str, params: dict, gen: torch.Generator) -> torch.Tensor:
    """Each drop is a small lens: it shows a defocused, inverted and minified view of
    what lies behind it, darker at the rim, with a soft anti-aliased edge."""
    _, _, h, w = x.shape
    s = params["blur_sigma"]
    blurred = separable_blur(x, gaussian_1d(s, int(min(3 * s, min(h, w) - 1))))
    out = x.clone()
    for cx, cy, r, stretch in _drop_geometry(h, w, params, gen).tolist():
        x0, x1 = max(0, int(cx - r)), min(w, int(cx + r) + 2)
        y0, y1 = max(0, int(cy - r * stretch)), min(h, int(cy + r * stretch) + 2)
        if x1 <= x0 or y1 <= y0:
            continue
        yy, xx = torch.meshgrid(torch.arange(y0, y1, dtype=torch.float64),
                                torch.arange(x0, x1, dtype=torch.float64), indexing="ij")
        dx, dy = xx - cx, yy - cy
        rho = torch.sqrt((dx / r) ** 2 + (dy / (r * stretch)) ** 2)
        alpha = torch.clamp((1 - rho) * r / 1.5, 0, 1).float()
        sx = torch.clamp(cx - 0.6 * dx, 0, w - 1).round().long()
        sy = torch.clamp(cy - 0.6 * dy, 0, h - 1).round().long()
        shade = (1.08 - 0.3 * torch.clamp(rho, 0, 1) ** 4).float()
        inside = torch.clamp(blurred[0][:, sy, sx] * shade, 0, 1)
        region = out[0, :, y0:y1, x0:x1]
        out[0, :, y0:y1, x0:x1] = region * (1 - alpha) + inside * alpha
    return out


def scene_severity(op: str, params: dict) -> float:
    if op == "atmospheric_scattering":
        v, r = params["beta"], HAZE_BETA
    elif op == "streaks":
        v, r = params["density"], RAIN_DENSITY
    else:
        v, r = params["count"], DROP_COUNT
    return float(np.clip((v - r[0]) / (r[1] - r[0]), 0, 1))
