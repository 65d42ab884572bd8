"""Image quality metrics that follow the conventions of published tables.

Full-reference (called as f(pred, ref)): psnr, ssim, ms_ssim, lpips, dists.
No-reference (f(image)): niqe, piqe, brisque. Correlations: plcc, srcc, krcc.
Images may be paths, PIL images, HxWx3 uint8 arrays, or float tensors in [0, 1] shaped
(3,H,W) or (B,3,H,W); a batch gives an (N,) array of per-image values.
See psnr_ssim.py for the "sr" (default), "matlab" and "pyiqa" conventions.
"""
from __future__ import annotations

from .correlation import krcc, plcc, srcc
from .inputs import MetricInputError
from .niqe import niqe
from .psnr_ssim import ms_ssim, psnr, ssim
from .registry import Metric, create_metric, list_metrics


def piqe(image, crop_border: int = 0):
    """PIQE (Venkatanath et al. 2015), 0-100, lower is better. See piqe.py."""
    from .piqe import piqe as _piqe

    return _piqe(image, crop_border=crop_border)


def brisque(image, crop_border: int = 0):
    """BRISQUE with the Apache-2.0 libsvm model of the `brisque` package. See brisque.py."""
    from .brisque import brisque as _brisque

    return _brisque(image, crop_border=crop_border)


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
