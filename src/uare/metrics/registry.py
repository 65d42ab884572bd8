"""The metric registry: names, modes and directions, resolved lazily.

`create_metric("niqe")` returns a callable that knows whether it is full-reference and
which direction is better, so tables and the CLI need no per-metric special cases.
Implementations are imported on first use, so the deep metrics (torch networks) cost
nothing until asked for.
"""
from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from typing import Callable


@dataclass(frozen=True)
class MetricSpec:
    name: str
    target: str  # "module:function" under uare.metrics
    mode: str  # "FR" (pred, ref) or "NR" (image)
    lower_better: bool
    description: str
    defaults: dict = field(default_factory=dict)


SPECS = {s.name: s for s in [
    MetricSpec("psnr", "psnr_ssim:psnr", "FR", False, "peak signal-to-noise ratio (dB)"),
    MetricSpec("ssim", "psnr_ssim:ssim", "FR", False, "structural similarity"),
    MetricSpec("ms_ssim", "psnr_ssim:ms_ssim", "FR", False, "multi-scale structural similarity"),
    MetricSpec("lpips", "lpips_net:lpips", "FR", True, "LPIPS v0.1, AlexNet features", {"net": "alex"}),
    MetricSpec("lpips-vgg", "lpips_net:lpips", "FR", True, "LPIPS v0.1, VGG16 features", {"net": "vgg"}),
    MetricSpec("dists", "dists_net:dists", "FR", True, "DISTS (VGG16 structure and texture)"),
    MetricSpec("niqe", "niqe:niqe", "NR", True, "NIQE, MATLAB-release protocol"),
    MetricSpec("piqe", "piqe:piqe", "NR", True, "PIQE (0-100)"),
    MetricSpec("brisque", "brisque:brisque", "NR", True, "BRISQUE (libsvm model of the `brisque` package)"),
]}
ALIASES = {"ms-ssim": "ms_ssim", "msssim": "ms_ssim", "lpips-alex": "lpips", "lpips_vgg": "lpips-vgg"}


def resolve_name(name: str) -> str:
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in SPECS:
        raise ValueError(f"unknown metric {name!r}; available: {', '.join(SPECS)}")
    return key


class Metric:
    """A configured metric. FR metrics are called as metric(pred, ref), NR as metric(image);
    both return a float for one image and an (N,) array for a batch."""

    def __init__(self, spec: MetricSpec, **options):
        module_name, func = spec.target.split(":")
        module = importlib.import_module(f"{__package__}.{module_name}")
        self._fn: Callable = getattr(module, func)
        params = inspect.signature(self._fn).parameters
        unknown = sorted(set(options) - set(params))
        if unknown:
            raise ValueError(f"metric {spec.name!r} has no option {', '.join(unknown)}; "
                             f"its options: {', '.join(list(params)[1 + (spec.mode == 'FR'):])}")
        self.spec = spec
        self.options = {**spec.defaults, **options}
        check = getattr(module, "check_available", None)
        if check is not None:  # fail at creation (e.g. missing weight files), not at the first image
            accepted = inspect.signature(check).parameters
            check(**{k: v for k, v in self.options.items() if k in accepted})

    name = property(lambda self: self.spec.name)
    mode = property(lambda self: self.spec.mode)
    lower_better = property(lambda self: self.spec.lower_better)

    def __call__(self, *images):
        need = 2 if self.mode == "FR" else 1
        if len(images) != need:
            what = "(pred, ref)" if need == 2 else "(image)"
            raise TypeError(f"{self.name} is called as {self.name}{what}, got {len(images)} images")
        return self._fn(*images, **self.options)

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"Metric({self.name!r}, mode={self.mode}, lower_better={self.lower_better}{', ' + opts if opts else ''})"


def create_metric(name: str, **options) -> Metric:
    """A callable metric with `.name`, `.mode` ("FR"/"NR") and `.lower_better`."""
    return Metric(SPECS[resolve_name(name)], **options)


def list_metrics(mode: str | None = None) -> list[str]:
    """Registered metric names, optionally only "FR" or "NR" ones."""
    if mode is not None and mode not in ("FR", "NR"):
        raise ValueError(f"mode must be 'FR' or 'NR', got {mode!r}")
    return [n for n, s in SPECS.items() if mode is None or s.mode == mode]
