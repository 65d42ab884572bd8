"""DISTS (Ding et al. 2020): structure and texture similarity on L2-pooled VGG16.

For the input image and each of five VGG stages, per-channel means give a texture
(luminance-like) term S1 = (2 mx my + c)/(mx^2 + my^2 + c) and per-channel
(co)variances a structure term S2 = (2 cov + c)/(vx + vy + c); the learned weights
alpha (on S1) and beta (on S2) are normalised to sum to one together, and
DISTS = 1 - sum(alpha S1 + beta S2). Identical images give 0.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Optional

import torch
from torch import nn

from . import weights as W
from .backbones import VGG16_CHANNELS, VGG16_TAPS, vgg16_l2pooled
from .inputs import pair

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
CHANNELS = (3, *VGG16_CHANNELS)  # the raw image counts as a stage


class DISTS(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = vgg16_l2pooled()
        total = sum(CHANNELS)
        self.alpha = nn.Parameter(torch.full((1, total, 1, 1), 0.1))
        self.beta = nn.Parameter(torch.full((1, total, 1, 1), 0.1))
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)
        self.eval()

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(N,3,H,W) in [0, 1] -> [x, relu1_2, relu2_2, relu3_3, relu4_3, relu5_3]."""
        out, h = [x], (x - self.mean) / self.std
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in VGG16_TAPS:
                out.append(h)
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x, y: (N,3,H,W) in [0, 1] -> (N,) distances."""
        c1 = c2 = 1e-6
        w_sum = self.alpha.sum() + self.beta.sum()
        alphas = torch.split(self.alpha / w_sum, CHANNELS, dim=1)
        betas = torch.split(self.beta / w_sum, CHANNELS, dim=1)
        n = len(x)
        total = 0
        for k, feat in enumerate(self.stages(torch.cat([x, y]))):
            f0, f1 = feat[:n], feat[n:]
            m0, m1 = f0.mean((2, 3), keepdim=True), f1.mean((2, 3), keepdim=True)
            s1 = (2 * m0 * m1 + c1) / (m0 ** 2 + m1 ** 2 + c1)
            v0 = ((f0 - m0) ** 2).mean((2, 3), keepdim=True)
            v1 = ((f1 - m1) ** 2).mean((2, 3), keepdim=True)
            cov = (f0 * f1).mean((2, 3), keepdim=True) - m0 * m1
            s2 = (2 * cov + c2) / (v0 + v1 + c2)
            total = total + (alphas[k] * s1 + betas[k] * s2).sum(dim=(1, 2, 3))
        return 1 - total


@lru_cache(maxsize=2)
def load_dists(weights: Optional[str] = None) -> DISTS:
    paths = W.find(("vgg16", "dists"), weights)
    model = DISTS()
    W.load_into(model.features, paths["vgg16"], prefix="features.")
    heads = nn.ParameterDict({"alpha": model.alpha, "beta": model.beta})
    W.load_into(heads, paths["dists"])
    return model


def check_available(weights: Optional[str] = None) -> None:
    W.find(("vgg16", "dists"), weights)


@torch.no_grad()
def dists(pred, ref, weights: Optional[str] = None):
    """DISTS distance, lower is more similar; a float, or an (N,) array for a batch."""
    a, b = pair(pred, ref)
    model = load_dists(None if weights is None else str(weights))
    values = model(W.to_tensor(a.pixels), W.to_tensor(b.pixels))
    return a.result(values.double().numpy())
