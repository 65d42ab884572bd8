"""How much of the model's change an output keeps (`mix`), and the noise-adaptive share.

A denoiser's output differs from its input by d = restored - input = e - n, where n is the
noise and e the model's own error (detail it smoothed away, noise it left). If e is
uncorrelated with n, the blend input + a d has the least squared error at
a = |n|^2 / |d|^2: the share of the change that is noise (a Wiener shrinkage toward the
input). |d|^2 is known; |n|^2 is estimated from the input alone, so mild noise keeps the
input's detail (a small share) and heavy noise takes nearly all of the model's output.
Both are read on luma (auto_mix). On the tune crops (session 13, model card) the tiny
model's output blended so was at or above the whole output at every noise strength, and
4-5 dB above it (0.8-1 dB above the input) on light noise, where any fixed share lost
at one end or the other.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# Immerkaer's (1996) mask: the difference of two Laplacians, which cancels smooth image
# content to second order; white noise of std s comes out with std 6 s (sum of squares 36)
_MASK = torch.tensor([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])
_LUMA = torch.tensor([0.299, 0.587, 0.114])


def noise_sigma(x: torch.Tensor) -> float:
    """Std of additive white noise in (C, H, W) pixels in [0, 1]: the median absolute
    response to Immerkaer's mask over all channels, / 0.6745 (a Gaussian's MAD) / 6. The
    median, not Immerkaer's mean, so edges and texture do not count as noise (the mean
    overestimated mild noise by 20% on the tune crops, the median by 9%). Noise is clipped
    where the image is near 0 or 1, so the estimate is repeated over the pixels whose 5x5
    mean lies more than 2 estimated sigmas inside (heavy noise on a photo with 15% of its
    pixels clipped read 40% low over all of them, 7% high this way)."""
    if x.dim() != 3 or min(x.shape[-2:]) < 3:
        raise ValueError(f"noise_sigma needs (C, H, W) pixels of at least 3x3, got {tuple(x.shape)}")
    x = x.float().unsqueeze(1)
    r = F.conv2d(x, _MASK.to(x.device).view(1, 1, 3, 3)).abs()
    sigma = _mad_sigma(r.flatten())
    if min(x.shape[-2:]) < 5:
        return sigma
    inner, mean = r[..., 1:-1, 1:-1], F.avg_pool2d(x, 5, stride=1)   # both centred on x[2:-2]
    for _ in range(3):
        kept = inner[(mean > 2 * sigma) & (mean < 1 - 2 * sigma)]
        if kept.numel() < inner.numel() // 20:
            break
        sigma = _mad_sigma(kept)
    return sigma


def _mad_sigma(responses: torch.Tensor) -> float:
    return float(responses.median()) / 0.6745 / 6.0


def noise_sigmas(y: torch.Tensor) -> torch.Tensor:
    """Per image, the std of white noise in (N, 1, H, W) pixels (any units): noise_sigma's
    first estimate (the median over all the responses, no clipped-pixel pass), batched and
    without a Python loop, for a network to be told its input's noise level."""
    if y.dim() != 4 or y.shape[1] != 1 or min(y.shape[-2:]) < 3:
        raise ValueError(f"noise_sigmas needs (N, 1, H, W) pixels of at least 3x3, got {tuple(y.shape)}")
    r = F.conv2d(y.float(), _MASK.to(y.device).view(1, 1, 3, 3)).abs().flatten(1)
    return r.median(dim=1).values / 0.6745 / 6.0


def auto_mix(restored: torch.Tensor, x: torch.Tensor) -> float:
    """The share of (restored - x) to keep for a noisy input x, (3, H, W) in [0, 1]:
    min(1, sigma^2 / mean d^2), both on luma (BT.601). On luma because a denoiser's error is
    alike in the three channels while camera and synthetic noise are partly independent
    per channel, so luma holds relatively less noise than RGB: the RGB share was too large
    for PSNR-Y (tune crops, session 13: 0.2 dB lower over five noise strengths, up to 1.2
    dB on a lightly noisy crop)."""
    if min(x.shape[-2:]) < 3:
        return 1.0
    luma = _LUMA.to(x.device).view(3, 1, 1)
    y_in = (x.float() * luma).sum(0, keepdim=True)
    change = float(((restored.float() * luma).sum(0, keepdim=True) - y_in).pow(2).mean())
    if not change > 0:
        return 1.0
    share = noise_sigma(y_in) ** 2 / change
    return 1.0 if not math.isfinite(share) else min(1.0, share)
