"""Presets and `degrade`: the one entry point the data pipeline, the CLI and the demo use.

Presets: `single:TYPE[:SEVERITY]`, `multi:A+B[+C]` and `realesrgan`. Mixed types are
applied in physical order whatever order they are named in: the scene (haze, rain,
drops, illumination), then the optics (blur), sampling, the sensor (noise), the codec.
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import torch
from PIL import Image

from ..imageio import ImageLike, load_image
from .apply import apply_steps
from .blur import plan_blur
from .jpeg import plan_jpeg
from .lowlight import plan_lowlight
from .noise import plan_noise
from .ops import pil_to_tensor, seed_streams, tensor_to_pil, torch_generator
from .realesrgan import PRESET as REALESRGAN, realesrgan_batch
from .resize import FACTOR, plan_downsample
from .weather import plan_haze, plan_rain, plan_raindrop

Planner = Callable[[float, np.random.Generator], list]

PLANNERS: dict[str, Planner] = {
    "blur": plan_blur, "noise": plan_noise, "jpeg": plan_jpeg, "haze": plan_haze,
    "rain": plan_rain, "raindrop": plan_raindrop, "lowlight": plan_lowlight,
    "downsample": plan_downsample,
}
SINGLE_TYPES: tuple[str, ...] = tuple(PLANNERS)
ALIASES = {"sr": "downsample", "x4": "downsample", "low-light": "lowlight", "low_light": "lowlight"}

# Where each (type, op) sits in the imaging chain; a stable sort keeps ties in order.
PHASE = {("haze", "atmospheric_scattering"): 0.0, ("rain", "streaks"): 0.1,
         ("raindrop", "drops"): 0.2, ("lowlight", "exposure_gamma"): 0.5, ("blur", None): 1.0,
         ("downsample", None): 2.0, ("lowlight", "sensor_noise"): 3.0, ("noise", None): 3.1,
         ("jpeg", None): 4.0}

TYPE_ORDER = ("haze", "rain", "raindrop", "lowlight", "blur", "downsample", "noise", "jpeg")

# The nine mixed combinations of the paper's Table 2 (FoundIR's multi-degradation subsets).
MIXED_COMBOS: tuple[tuple[str, ...], ...] = (
    ("blur", "noise"), ("blur", "jpeg"), ("lowlight", "haze"), ("lowlight", "blur"),
    ("lowlight", "noise"), ("lowlight", "jpeg"), ("lowlight", "blur", "noise"),
    ("lowlight", "blur", "jpeg"), ("lowlight", "noise", "jpeg"))

PRESETS: tuple[str, ...] = (tuple(f"single:{t}" for t in SINGLE_TYPES)
                            + tuple("multi:" + "+".join(c) for c in MIXED_COMBOS) + (REALESRGAN,))


class PresetError(ValueError):
    """An unknown or malformed preset name; the message lists the valid ones."""


def _valid_help() -> str:
    return (f"valid presets: single:TYPE[:SEVERITY] with TYPE in {{{', '.join(SINGLE_TYPES)}}} "
            f"and SEVERITY in [0, 1]; multi:A+B[+C] of those types, e.g. "
            f"{', '.join('multi:' + '+'.join(c) for c in MIXED_COMBOS[:3])}, ...; {REALESRGAN}")


def _type(name: str, preset: str) -> str:
    t = ALIASES.get(name.strip().lower(), name.strip().lower())
    if t not in PLANNERS:
        raise PresetError(f"unknown degradation type {name!r} in preset {preset!r}; {_valid_help()}")
    return t


def parse_preset(preset: str) -> tuple[str, tuple[str, ...], Optional[float]]:
    """-> (kind, types, severity or None). Raises PresetError naming the valid presets."""
    if not isinstance(preset, str):
        raise PresetError(f"preset must be a string, got {type(preset).__name__}; {_valid_help()}")
    parts = preset.strip().split(":")
    kind = parts[0].lower()
    if kind == REALESRGAN and len(parts) == 1:
        return kind, (), None
    if kind == "single" and len(parts) in (2, 3):
        severity = None
        if len(parts) == 3:
            try:
                severity = float(parts[2])
            except ValueError:
                severity = -1.0
            if not 0.0 <= severity <= 1.0:
                raise PresetError(f"severity {parts[2]!r} in preset {preset!r} must be a number in [0, 1]")
        return kind, (_type(parts[1], preset),), severity
    if kind == "multi" and len(parts) == 2:
        types = tuple(_type(t, preset) for t in parts[1].split("+"))
        if not 2 <= len(types) <= 3 or len(set(types)) != len(types):
            raise PresetError(f"preset {preset!r} needs two or three different types; {_valid_help()}")
        return kind, types, None
    raise PresetError(f"unknown preset {preset!r}; {_valid_help()}")


def _phase(step: dict) -> float:
    key = (step["type"], step["op"])
    return PHASE.get(key, PHASE.get((step["type"], None), 5.0))


def plan(preset: str, seed: int = 0, size: tuple[int, int] = (512, 512)) -> dict:
    """The record `degrade` will produce for an image of size (h, w), without pixels."""
    kind, types, severity = parse_preset(preset)
    if kind == REALESRGAN:
        from .realesrgan import sample_realesrgan
        return sample_realesrgan(seed, size)
    rng, _ = seed_streams(seed)
    sev, steps = {}, []
    # Draw in a fixed order, so naming the same types differently gives the same image.
    for t in sorted(types, key=TYPE_ORDER.index):
        s = float(rng.uniform()) if severity is None else severity
        sev[t] = s
        steps.extend(PLANNERS[t](s, rng))
    steps.sort(key=_phase)
    h, w = size
    scale = FACTOR if "downsample" in types else 1
    name = f"single:{types[0]}" if kind == "single" else "multi:" + "+".join(types)
    if severity is not None:
        name += f":{preset.strip().split(':')[2]}"
    return {"preset": name, "seed": int(seed), "scale": scale, "input_size": [w, h],
            "output_size": [w // scale, h // scale], "steps": steps, "severity": sev}


def degrade(image: ImageLike, preset: str, seed: int = 0) -> tuple[Image.Image, dict]:
    """Degrade one image. Returns (the low-quality PIL image, its record as plain JSON).

    image: a path, PIL image or HxWx3 uint8 array. The same (image, preset, seed) gives a
    bit-identical result; `realesrgan` and `single:downsample` return a x4 smaller image.
    """
    img = load_image(image)
    record = plan(preset, seed, (img.height, img.width))
    x = pil_to_tensor(img)
    if record["preset"] == REALESRGAN:
        lq, _, _ = realesrgan_batch(x, [seed], records=[record])
    else:
        gen = torch_generator(seed_streams(seed)[1])
        with torch.no_grad():
            lq = apply_steps(x, record["steps"], gen)
    out = tensor_to_pil(lq)
    record["output_size"] = [out.width, out.height]
    return out, record


def sample_preset(rng: np.random.Generator, weights: Optional[dict[str, float]] = None) -> str:
    """A random preset for the data pipeline: one of PRESETS (no fixed severity; the
    severity is drawn from the seed when degrading). weights: {kind: weight} over
    "single", "multi", "realesrgan" (equal by default)."""
    weights = weights or {"single": 1.0, "multi": 1.0, REALESRGAN: 1.0}
    unknown = set(weights) - {"single", "multi", REALESRGAN}
    if unknown:
        raise ValueError(f"sample_preset: unknown kinds {sorted(unknown)}; use single, multi, {REALESRGAN}")
    kinds = [k for k, v in weights.items() if v > 0]
    p = np.array([weights[k] for k in kinds], dtype=np.float64)
    kind = kinds[rng.choice(len(kinds), p=p / p.sum())]
    pool = [pr for pr in PRESETS if pr.split(":")[0] == kind]
    return str(pool[rng.integers(len(pool))])
