"""The metrics an evaluation reports, resolved once per run from `uare.metrics`.

Full-reference metrics see (pred, ref) after `crop_border` pixels are cut from every
side (the SR convention: crop = scale); PSNR/SSIM are asked for the Y channel when
`y_channel` is set (BT.601, as the SR literature reports them). Metrics whose weights are
absent (LPIPS/DISTS here) are dropped with a note when they were only asked for by
default, and are an error when asked for by name.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np
from PIL import Image

from .report import Column

Y_CHANNEL_METRICS = ("psnr", "ssim", "ms_ssim")
DEFAULT_METRICS = {
    "sr": ("psnr", "ssim", "lpips", "dists", "niqe"),
    "restore": ("psnr", "ssim", "lpips", "niqe"),
}


class MetricUnavailable(RuntimeError):
    """A metric that cannot run here (its weights or package are missing)."""


def _uare_factory(name: str, **options):
    try:
        from uare.metrics import create_metric
    except ImportError as e:
        raise MetricUnavailable(f"uare.metrics is not available in this build ({e})") from None
    try:
        return create_metric(name, **options)
    except (OSError, ImportError, RuntimeError, ValueError, KeyError) as e:
        # Unknown names and absent weights alike: an error when asked for by name,
        # a note when only a default.
        raise MetricUnavailable(f"{name}: not available here ({e})") from None


@dataclass
class MetricSet:
    """Callable: (pred, ref) PIL images -> {metric name: float}."""

    metrics: list = field(default_factory=list)
    crop_border: int = 0
    y_channel: bool = True
    skipped: list = field(default_factory=list)      # "name: reason" for dropped defaults

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.metrics]

    @property
    def settings(self) -> dict:
        """What changes the numbers: part of every cache digest."""
        return {"metrics": self.names, "crop": self.crop_border, "y": self.y_channel}

    def columns(self) -> list[Column]:
        return [Column(m.name, m.name.upper().replace("_", "-"), bool(m.lower_better))
                for m in self.metrics]

    def __call__(self, pred: Image.Image, ref: Optional[Image.Image]) -> dict[str, float]:
        p = np.asarray(pred, dtype=np.uint8)
        r = None if ref is None else np.asarray(ref, dtype=np.uint8)
        if r is not None and p.shape != r.shape:
            raise ValueError(f"output is {p.shape[1]}x{p.shape[0]} but the reference is "
                             f"{r.shape[1]}x{r.shape[0]}")
        out = {}
        c = self.crop_border
        for m in self.metrics:
            if m.mode == "FR":
                if r is None:
                    continue
                pc, rc = (p[c:-c, c:-c], r[c:-c, c:-c]) if c > 0 else (p, r)
                out[m.name] = float(m(np.ascontiguousarray(pc), np.ascontiguousarray(rc)))
            else:
                out[m.name] = float(m(p))
        return out


def build_metrics(names: Optional[Sequence[str]], task: str, crop_border: int = 0,
                  y_channel: bool = True, factory: Optional[Callable] = None,
                  reference: bool = True) -> MetricSet:
    """Resolve metric names (None: the task's defaults) into a MetricSet.

    Requested-by-name metrics that cannot run raise MetricUnavailable; defaults that
    cannot run are dropped and listed in `.skipped`. Without a reference only NR metrics
    are kept."""
    explicit = names is not None
    names = list(names) if explicit else list(DEFAULT_METRICS.get(task, ("niqe",)))
    factory = factory or _uare_factory
    mset = MetricSet(crop_border=crop_border, y_channel=y_channel)
    for name in names:
        opts = {"y_channel": y_channel} if name in Y_CHANNEL_METRICS else {}
        try:
            metric = factory(name, **opts)
        except MetricUnavailable as e:
            if explicit:
                raise
            mset.skipped.append(str(e))
            continue
        if metric.mode == "FR" and not reference:
            mset.skipped.append(f"{name}: full-reference, and this set has no ground truth")
            continue
        mset.metrics.append(metric)
    return mset
