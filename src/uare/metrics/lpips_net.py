"""LPIPS v0.1 (Zhang et al. 2018): learned perceptual distance on AlexNet or VGG16.

distance = sum over 5 layers of mean_{h,w} w_k . (f0 - f1)^2, where f are the layer's
activations normalised to unit length along channels and w_k >= 0 are the learned
linear heads. Inputs in [0, 1] are mapped to [-1, 1] and then through LPIPS's fixed
scaling layer, as the reference implementation does with normalize=True.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Optional

import torch
from torch import nn

from . import weights as W
from .backbones import Backbone
from .inputs import pair

SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)


class LinearHead(nn.Module):
    """One 1x1 head; the `model` Sequential(Dropout, Conv) keeps the release's key names
    (`lin{k}.model.1.weight`). Dropout is inert in eval mode."""

    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class LPIPS(nn.Module):
    """Backbone plus the five 1x1 heads, named as in the LPIPS release (`lin{k}.model.1.weight`)
    and torchvision (`features.N.*`)."""

    def __init__(self, net: str = "alex"):
        super().__init__()
        self.net = Backbone(net)
        self.heads = nn.ModuleDict({f"lin{k}": LinearHead(c) for k, c in enumerate(self.net.channels)})
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        self.eval()

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x, y: (N,3,H,W) in [0, 1] -> (N,) distances."""
        both = (torch.cat([x, y]) * 2 - 1 - self.shift) / self.scale
        total = 0
        for k, feat in enumerate(self.net(both)):
            feat = feat / (feat.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            f0, f1 = feat.chunk(2)
            total = total + self.heads[f"lin{k}"]((f0 - f1) ** 2).mean(dim=(1, 2, 3))
        return total


@lru_cache(maxsize=4)
def load_lpips(net: str = "alex", weights: Optional[str] = None) -> LPIPS:
    """LPIPS with the converted torchvision backbone and the v0.1 heads."""
    if net not in ("alex", "vgg"):
        raise ValueError(f"LPIPS net must be 'alex' or 'vgg', got {net!r}")
    backbone = "alexnet" if net == "alex" else "vgg16"
    paths = W.find((backbone, f"lpips_{net}"), weights)
    model = LPIPS(net)
    W.load_into(model.net.features, paths[backbone], prefix="features.")
    W.load_into(model.heads, paths[f"lpips_{net}"])
    return model


def check_available(net: str = "alex", weights: Optional[str] = None) -> None:
    """Raise WeightsNotFoundError now rather than at the first image."""
    W.find(("alexnet" if net == "alex" else "vgg16", f"lpips_{net}"), weights)


@torch.no_grad()
def lpips(pred, ref, net: str = "alex", weights: Optional[str] = None):
    """LPIPS distance, lower is more similar; a float, or an (N,) array for a batch."""
    a, b = pair(pred, ref)
    model = load_lpips(net, None if weights is None else str(weights))
    values = model(W.to_tensor(a.pixels), W.to_tensor(b.pixels))
    return a.result(values.double().numpy())
