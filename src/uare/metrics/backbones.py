"""AlexNet and VGG16 feature extractors written here (no torchvision).

The module layout follows torchvision's `features` Sequential, so the parameter names
of a converted torchvision checkpoint (`features.0.weight`, ...) load unchanged.
Only the convolutional trunk is built: the perceptual metrics never use the classifier.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# VGG16 configuration "D": channels per conv, "M" for a 2x2 max-pool.
VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
# Indices (in `features`) of the ReLUs that LPIPS and DISTS read: relu1_2 ... relu5_3.
VGG16_TAPS = (3, 8, 15, 22, 29)
VGG16_CHANNELS = (64, 128, 256, 512, 512)
ALEX_TAPS = (1, 4, 7, 9, 11)
ALEX_CHANNELS = (64, 192, 384, 256, 256)


def alexnet_features() -> nn.Sequential:
    """torchvision's AlexNet trunk (the "one weird trick" variant, 64-192-384-256-256)."""
    return nn.Sequential(
        nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
    )


def vgg16_features() -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = 3
    for v in VGG16_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, v, 3, padding=1), nn.ReLU(inplace=True)]
            channels = v
    return nn.Sequential(*layers)


class Backbone(nn.Module):
    """A `features` trunk that returns the activations at `taps`: list of (N,C_k,H_k,W_k)."""

    def __init__(self, net: str):
        super().__init__()
        if net == "alex":
            self.features, self.taps, self.channels = alexnet_features(), ALEX_TAPS, ALEX_CHANNELS
        elif net == "vgg":
            self.features, self.taps, self.channels = vgg16_features(), VGG16_TAPS, VGG16_CHANNELS
        else:
            raise ValueError(f"unknown backbone {net!r}; use 'alex' or 'vgg'")
        # Nothing after the last tap is ever needed.
        self.features = self.features[: self.taps[-1] + 1]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                out.append(x)
        return out


class L2Pool(nn.Module):
    """DISTS's replacement for max-pooling: sqrt of a Hann-weighted (3x3) mean of x^2,
    stride 2. Unlike max-pooling it is anti-aliased, which keeps the texture statistics
    stable under small shifts."""

    def __init__(self, channels: int):
        super().__init__()
        a = torch.hann_window(5, periodic=False, dtype=torch.float64)[1:-1]  # [0.5, 1, 0.5]
        g = torch.outer(a, a)
        self.register_buffer("filter", (g / g.sum()).float().expand(channels, 1, 3, 3).contiguous(),
                             persistent=False)  # fixed, so not part of any weight file

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.conv2d(x * x, self.filter, stride=2, padding=1, groups=x.shape[1])
        return torch.sqrt(out + 1e-12)


def vgg16_l2pooled() -> nn.Sequential:
    """VGG16 trunk with each max-pool swapped for L2Pool; indices match torchvision's, so
    `features.N.weight` keys load into it directly."""
    feats = vgg16_features()[: VGG16_TAPS[-1] + 1]
    for i, layer in enumerate(feats):
        if isinstance(layer, nn.MaxPool2d):
            feats[i] = L2Pool(feats[i - 2].out_channels)
    return feats
