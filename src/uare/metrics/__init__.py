"""Image quality metrics that follow the conventions of published tables.

Full-reference (called as f(pred, ref)): psnr, ssim, ms_ssim, lpips, dists.
No-reference (f(image)): niqe, piqe, brisque. Correlations: plcc, srcc, krcc.
Images may be paths, PIL images, HxWx3 uint8 arrays, or float tensors in [0, 1] shaped
(3,H,W) or (B,3,H,W); a batch gives an (N,) array of per-image values.
See psnr_ssim.py for the "sr" (default), "matlab" and "pyiqa" conventions.
"""
from __future__ import annotations

from .brisque import brisque
from .correlation import krcc, plcc, srcc
from .inputs import MetricInputError
from .niqe import niqe
from .piqe import piqe
from .psnr_ssim import ms_ssim, psnr, ssim
from .registry import Metric, create_metric, list_metrics


def lpips(pred, ref, net: str = "alex", weights=None):
    """LPIPS v0.1 distance (lower is more similar). See lpips_net.py for the weight files."""
    from .lpips_net import lpips as _lpips

    return _lpips(pred, ref, net=net, weights=weights)


def dists(pred, ref, weights=None):
    """DISTS distance (lower is more similar). See dists_net.py for the weight files."""
    from .dists_net import dists as _dists

    return _dists(pred, ref, weights=weights)


__all__ = ["psnr", "ssim", "ms_ssim", "niqe", "piqe", "brisque", "lpips", "dists", "plcc", "srcc",
           "krcc", "create_metric", "list_metrics", "Metric", "MetricInputError"]
