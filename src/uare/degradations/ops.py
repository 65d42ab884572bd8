"""Tensor building blocks shared by every degradation: conversion, filtering, resizing.

All functions take float32 NCHW tensors in [0, 1] (RGB), the batched layout of
docs/design.md, and never loop over pixels in Python.
"""
from __future__ import annotations

import functools
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

RESIZE_MODES = ("area", "bilinear", "bicubic")
# ITU-R BT.601 luma weights, the grey conversion that Real-ESRGAN's grey noise uses.
LUMA = (0.299, 0.587, 0.114)


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """RGB PIL image -> (1, 3, H, W) float32 in [0, 1]."""
    arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1)[None].contiguous()


def tensor_to_uint8(x: torch.Tensor) -> np.ndarray:
    """(3, H, W) or (1, 3, H, W) float in [0, 1] -> HxWx3 uint8 (rounded, clipped)."""
    if x.ndim == 4:
        x = x[0]
    q = torch.clamp(torch.round(x.detach().float().cpu() * 255.0), 0, 255).to(torch.uint8)
    return q.permute(1, 2, 0).numpy()


def tensor_to_pil(x: torch.Tensor) -> Image.Image:
    return Image.fromarray(tensor_to_uint8(x), mode="RGB")


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Round to the 8-bit grid, as a saved image would be."""
    return torch.clamp(torch.round(x * 255.0), 0, 255) / 255.0


def to_grey(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 1, H, W) BT.601 luma."""
    w = torch.tensor(LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)


def pad_reflect(x: torch.Tensor, ph: int, pw: int) -> torch.Tensor:
    """Reflect-101 padding (OpenCV's default border); replicate where the image is too
    small for reflection (torch refuses a reflect pad as large as the side)."""
    if ph == 0 and pw == 0:
        return x
    h, w = x.shape[-2:]
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (pw, pw, ph, ph), mode=mode)


def _fast_size(n: int) -> int:
    """Smallest m >= n whose only prime factors are 2, 3 and 5 (quick FFT lengths)."""
    m = n
    while True:
        r = m
        for p in (2, 3, 5):
            while r % p == 0:
                r //= p
        if r == 1:
            return m
        m += 1


def _filter2d_direct(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    p = kernels.shape[-1] // 2
    xp = pad_reflect(x, p, p).reshape(1, b * c, h + 2 * p, w + 2 * p)
    weight = kernels.to(x).repeat_interleave(c, dim=0)[:, None]
    return F.conv2d(xp, weight, groups=b * c).reshape(b, c, h, w)


def _filter2d_fft(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Same result as the direct correlation (to float rounding): the reflect pad holds
    every tap a valid output reads, and zeros up to a fast FFT size absorb the wrap."""
    b, c, h, w = x.shape
    k = kernels.shape[-1]
    p = k // 2
    xp = pad_reflect(x, p, p)
    fh, fw = _fast_size(h + 2 * p), _fast_size(w + 2 * p)
    kp = torch.zeros((kernels.shape[0], fh, fw), dtype=torch.float32, device=x.device)
    kp[:, :k, :k] = kernels.to(kp)
    kp = torch.roll(kp, shifts=(-p, -p), dims=(1, 2))  # kernel centre at the origin
    spec = torch.fft.rfft2(xp, s=(fh, fw)) * torch.fft.rfft2(kp).conj()[:, None]
    return torch.fft.irfft2(spec, s=(fh, fw))[..., p:p + h, p:p + w]


FFT_MIN_KERNEL = 15  # the direct grouped convolution is quicker below this size


def filter2d(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Correlate each sample with its own kernel, reflect-101 borders, same size out.

    x: (B, C, H, W); kernels: (B, k, k) or (k, k) with k odd (one kernel per sample,
    shared by its channels). Small kernels run as one grouped convolution, large ones
    through the FFT, whose cost does not grow with the kernel.
    """
    b = x.shape[0]
    if kernels.ndim == 2:
        kernels = kernels[None]
    k = kernels.shape[-1]
    if kernels.shape[0] not in (1, b) or kernels.shape[-2] != k or k % 2 == 0:
        raise ValueError(f"filter2d: need 1 or {b} odd square kernels, got shape {tuple(kernels.shape)}")
    if k >= FFT_MIN_KERNEL:
        return _filter2d_fft(x, kernels)
    return _filter2d_direct(x, kernels.expand(b, -1, -1))


def trim_kernel(kernel: torch.Tensor, tol: float = 0.0) -> torch.Tensor:
    """Drop all-zero outer rings of a centred (k, k) kernel: Real-ESRGAN pads every
    kernel to 21x21, and convolving with the zeros would only cost time."""
    k = kernel.shape[-1]
    nz = torch.nonzero(kernel.abs() > tol)
    if nz.numel() == 0:
        return kernel
    c = k // 2
    r = int(max((nz - c).abs().max().item(), 0))
    return kernel[c - r:c + r + 1, c - r:c + r + 1]


def _pad_kernel(k: torch.Tensor, size: int) -> torch.Tensor:
    p = (size - k.shape[-1]) // 2
    return F.pad(k, (p, p, p, p))


def filter2d_each(x: torch.Tensor, kernels: Sequence[torch.Tensor]) -> torch.Tensor:
    """filter2d with one kernel of its own size per sample. Small kernels (trimmed of
    zero rings) are convolved directly, grouped by size, so their cost follows their
    true support; all large ones share one FFT pass."""
    out = torch.empty_like(x)
    trimmed = [trim_kernel(k) for k in kernels]
    groups: dict[int, list[int]] = {}
    for i, t in enumerate(trimmed):
        groups.setdefault(min(t.shape[-1], FFT_MIN_KERNEL), []).append(i)
    for size, idx in groups.items():
        big = max(trimmed[i].shape[-1] for i in idx)
        sel = torch.tensor(idx, device=x.device)
        out[sel] = filter2d(x[sel], torch.stack([_pad_kernel(trimmed[i], big) for i in idx]))
    return out


def gaussian_1d(sigma: float, radius: int) -> torch.Tensor:
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    return (g / g.sum()).float()


@functools.lru_cache(maxsize=32)
def _band_matrix_cached(taps: tuple, block: int) -> torch.Tensor:
    g = torch.tensor(taps, dtype=torch.float32)
    r = g.numel() // 2
    m = torch.zeros(block + 2 * r, block)
    j = torch.arange(block)
    t = torch.arange(2 * r + 1)
    m[j[None, :] + t[:, None], j[None, :].expand(2 * r + 1, -1)] = g[:, None].expand(-1, block)
    return m


def _band_matrix(g: torch.Tensor, block: int) -> torch.Tensor:
    """(block + 2r, block) matrix whose column j holds the taps for output j of a block
    (cached: the USM kernel is the same for every image)."""
    return _band_matrix_cached(tuple(g.detach().cpu().tolist()), block)


def _filter_rows(x: torch.Tensor, g: torch.Tensor, block: int = 64) -> torch.Tensor:
    """Correlate the last axis with taps g (reflect-101). The axis is cut into blocks
    with their 2r-wide margins and every block is one row of a single matrix product,
    which runs at GEMM speed where a one-channel convolution with a long kernel does not."""
    r = g.numel() // 2
    n = x.shape[-1]
    nb = -(-n // block)
    xp = F.pad(pad_reflect(x, 0, r), (0, nb * block - n))
    windows = xp.unfold(-1, block + 2 * r, block).reshape(-1, block + 2 * r)
    y = windows @ _band_matrix(g, block).to(x)
    return y.reshape(*x.shape[:-1], nb * block)[..., :n]


def separable_blur(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Blur every channel with the outer product g gᵀ (two 1-D passes, reflect-101)."""
    y = _filter_rows(x, g)
    return _filter_rows(y.transpose(-1, -2), g).transpose(-1, -2)


def resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """Resize to (h, w) with torch's defaults (no antialias), as Real-ESRGAN does."""
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize mode {mode!r}: expected one of {', '.join(RESIZE_MODES)}")
    h, w = max(1, int(size[0])), max(1, int(size[1]))
    if (h, w) == tuple(x.shape[-2:]):
        return x
    if mode == "area":
        return F.interpolate(x, size=(h, w), mode="area")
    return F.interpolate(x, size=(h, w), mode=mode, align_corners=False)


def torch_generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed) & 0x7FFF_FFFF_FFFF_FFFF)


def seed_streams(seed: int) -> tuple[np.random.Generator, int]:
    """One seed -> (parameter generator, seed for pixel-level randomness).

    Two independent streams, so sampling parameters never depends on image size and
    records can be drawn without making images.
    """
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    params, pixels = np.random.SeedSequence(int(seed)).spawn(2)
    return np.random.default_rng(params), int(pixels.generate_state(1, np.uint64)[0])


def usm_sharpen(x: torch.Tensor, weight: float = 0.5, threshold: float = 10.0,
                radius: int = 50, sigma: float = 0.0) -> torch.Tensor:
    """Unsharp masking as Real-ESRGAN sharpens its ground truth. x: (B, C, H, W).

    Only pixels whose residual exceeds `threshold` (0-255 scale) are sharpened, and the
    mask itself is blurred so the sharpened areas blend in. sigma 0 means OpenCV's
    choice for the kernel size: 0.3·((k − 1)/2 − 1) + 0.8 (8.0 for radius 50)."""
    k = radius + 1 if radius % 2 == 0 else radius  # OpenCV-style: even radius -> odd size
    if sigma <= 0:
        sigma = 0.3 * ((k - 1) * 0.5 - 1) + 0.8
    g = gaussian_1d(sigma, k // 2)
    blur = separable_blur(x, g)
    residual = x - blur
    mask = (residual.abs() * 255.0 > threshold).to(x.dtype)
    soft = separable_blur(mask, g)
    sharp = torch.clamp(x + weight * residual, 0, 1)
    return soft * sharp + (1 - soft) * x
