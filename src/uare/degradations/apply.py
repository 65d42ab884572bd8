"""Carry out a record's steps on an image tensor.

A step is the JSON dict of a record (`{"type", "op", "params"}`); one table maps each
type to the function that applies it, so every preset, Real-ESRGAN included, goes
through the same code and a record is exactly what was done.
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch

from .blur import apply_blur
from .jpeg import jpeg
from .kernels import sinc_kernel
from .lowlight import apply_lowlight
from .noise import add_noise
from .ops import filter2d, resize, usm_sharpen
from .resize import apply_downsample
from .weather import apply_haze, apply_rain, apply_raindrop

Step = dict
StepFn = Callable[[torch.Tensor, str, dict, torch.Generator], torch.Tensor]


def _apply_jpeg(x, op, params, gen):
    return jpeg(x, params["quality"])


def _apply_downsample(x, op, params, gen):
    # "resize" is Real-ESRGAN's random up/down/keep step; "bicubic" the single x4 type.
    if op == "resize":
        return resize(x, (params["size"][1], params["size"][0]), params["mode"])
    return apply_downsample(x, op, params, gen)


def _apply_sinc(x, op, params, gen):
    return filter2d(x, sinc_kernel(params["size"], params["omega_c"]).to(x.device))


def _apply_sharpen(x, op, params, gen):
    return usm_sharpen(x, params["weight"], params["threshold"], params["radius"])


APPLY: dict[str, StepFn] = {
    "blur": apply_blur,
    "noise": add_noise,
    "jpeg": _apply_jpeg,
    "haze": apply_haze,
    "rain": apply_rain,
    "raindrop": apply_raindrop,
    "lowlight": apply_lowlight,
    "downsample": _apply_downsample,
    "sinc": _apply_sinc,
    "sharpen": _apply_sharpen,
}


def apply_step(x: torch.Tensor, step: Step, gen: torch.Generator) -> torch.Tensor:
    """x: (1, 3, H, W) float in [0, 1]; returns the degraded tensor (size may change)."""
    fn = APPLY.get(step["type"])
    if fn is None:
        raise ValueError(f"unknown degradation type {step['type']!r}; expected one of {', '.join(APPLY)}")
    return fn(x, step["op"], step["params"], gen)


def apply_steps(x: torch.Tensor, steps: Iterable[Step], gen: torch.Generator) -> torch.Tensor:
    for step in steps:
        x = apply_step(x, step, gen)
    return x
