"""Tensor building blocks shared by every degradation: conversion, filtering, resizing.

All functions take float32 NCHW tensors in [0, 1] (RGB), the batched layout of
docs/design.md, and never loop over pixels in Python.
"""
from __future__ import annotations

import functools
from typing import Optional, Sequence

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


def _pad_axis(x: torch.Tensor, dim: int, r: int, fill: int) -> torch.Tensor:
    """Pad one of the last two axes by r on both sides as pad_reflect does (reflect-101,
    replicate when the axis is too short), then by `fill` more items at the end whose
    values do not matter: reflected too where the axis allows, so one pad does it all."""
    n = x.shape[dim]

    def pad(before, after, mode):
        return F.pad(x, (before, after, 0, 0) if dim == -1 else (0, 0, before, after), mode=mode)
    if r + fill < n:
        return pad(r, r + fill, "reflect")
    x = pad(r, r, "reflect" if r < n else "replicate")
    return pad(0, fill, "constant")


def _fast_size(n: int) -> int:
    """Smallest even m >= n whose only prime factors are 2, 3 and 5 (quick FFT lengths;
    odd lengths such as 405 measured twice as slow in the inverse real FFT)."""
    m = n + (n % 2)
    while True:
        r = m
        for p in (2, 3, 5):
            while r % p == 0:
                r //= p
        if r == 1:
            return m
        m += 2


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


# The direct convolution is quicker below this size, the FFT from it on (measured on one
# 3x400x400 image, one thread, machine shared with a training job: direct vs FFT 6.0 vs
# 6.6 ms at 9x9, 8.1 vs 6.0 ms at 11x11; the same order at 250 and 560 pixels).
FFT_MIN_KERNEL = 11
# Outer kernel rings whose total |weight| is below this share of the kernel's are dropped:
# that moves no output pixel by more than float32 resolution (2^-24) of the input range.
TRIM_MASS = 2.0 ** -24
# A kernel is filtered as two 1-D passes when its best rank-1 approximation is off by at
# most this share of its |weight| (every output pixel within 2.4e-7 of the 2-D result).
SEPARABLE_TOL = 2.0 ** -22
# 1-D passes up to this many taps run as shifted multiply-adds; longer ones (USM's 51) as
# banded matrix products (measured as above, both passes: 21 taps 6.0 vs 6.8 ms; the GEMM
# cost hardly grows with the taps, the shifted passes' does linearly).
SHIFT_MAX_TAPS = 25


def filter2d(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Correlate each sample with its own kernel, reflect-101 borders, same size out.

    x: (B, C, H, W); kernels: (B, k, k) or (k, k) with k odd (one kernel per sample,
    shared by its channels). One kernel for the whole batch is trimmed of negligible outer
    rings and runs as two 1-D passes when it is separable (isotropic Gaussians), else
    directly or through the FFT by size. Per-sample kernels run as one grouped
    convolution (small) or one batched FFT (large).
    """
    b = x.shape[0]
    if kernels.ndim == 2:
        kernels = kernels[None]
    k = kernels.shape[-1]
    if kernels.shape[0] not in (1, b) or kernels.shape[-2] != k or k % 2 == 0:
        raise ValueError(f"filter2d: need 1 or {b} odd square kernels, got shape {tuple(kernels.shape)}")
    if kernels.shape[0] == 1:
        return _filter2d_shared(x, kernels[0])
    return _filter2d_sized(x, kernels)


def _filter2d_sized(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """(1 or B, k, k) kernels: a grouped convolution below FFT_MIN_KERNEL, else the FFT."""
    if kernels.shape[-1] >= FFT_MIN_KERNEL:
        return _filter2d_fft(x, kernels)
    return _filter2d_direct(x, kernels.expand(x.shape[0], -1, -1))


def _filter2d_shared(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    kernel = trim_kernel(kernel, TRIM_MASS)
    taps = separable_taps(kernel)
    if taps is not None:
        return separable_filter(x, *taps)
    return _filter2d_sized(x, kernel[None])


def trim_kernel(kernel: torch.Tensor, mass: float = 0.0) -> torch.Tensor:
    """Drop outer rings of a centred (k, k) kernel while the dropped |weight| stays within
    `mass` of the kernel's total (0: only all-zero rings). Real-ESRGAN pads every kernel
    to 21x21 and a small sigma leaves most of it at nothing: convolving with it only
    costs time."""
    k = kernel.shape[-1]
    c = k // 2
    a = kernel.detach().abs().double().cpu().numpy()
    idx = np.abs(np.arange(k) - c)
    ring = np.bincount(np.maximum(idx[:, None], idx[None, :]).ravel(), weights=a.ravel(),
                       minlength=c + 1)
    budget = mass * float(ring.sum())
    r, dropped = c, 0.0
    while r > 0 and dropped + ring[r] <= budget:
        dropped += ring[r]
        r -= 1
    return kernel[c - r:c + r + 1, c - r:c + r + 1]


def separable_taps(kernel: torch.Tensor):
    """(column taps, row taps) whose outer product is the (k, k) kernel to SEPARABLE_TOL,
    or None. The test is numerical (rank 1 by SVD), so it finds every separable kernel,
    an axis-aligned anisotropic Gaussian included, and never assumes one."""
    k = kernel.detach().double().cpu().numpy()
    if k.shape[-1] == 1:
        return [float(k[0, 0])], [1.0]
    u, s, vt = np.linalg.svd(k)
    col, row = u[:, 0] * s[0], vt[0]
    if np.abs(k - np.outer(col, row)).sum() > SEPARABLE_TOL * np.abs(k).sum():
        return None
    return col.tolist(), row.tolist()


def _correlate_shifted(xp: torch.Tensor, taps: Sequence[float], dim: int, n: int) -> torch.Tensor:
    """out[i] = sum_t taps[t] * xp[i + t] along `dim` of an already padded tensor: one
    multiply-add pass over the image per tap, each reading contiguous runs."""
    out = xp.narrow(dim, 0, n) * float(taps[0])
    for t in range(1, len(taps)):
        if taps[t] != 0.0:
            out.add_(xp.narrow(dim, t, n), alpha=float(taps[t]))
    return out


def separable_filter(x: torch.Tensor, col: Sequence[float], row: Sequence[float]) -> torch.Tensor:
    """Correlate every channel with the outer product col rowᵀ (odd lengths, reflect-101):
    rows first, then columns."""
    if max(len(col), len(row)) > SHIFT_MAX_TAPS:
        y = _filter_rows(x, torch.tensor(row, dtype=torch.float32))
        return _filter_cols(y, torch.tensor(col, dtype=torch.float32))
    h, w = x.shape[-2:]
    xp = pad_reflect(x, len(col) // 2, len(row) // 2)
    return _correlate_shifted(_correlate_shifted(xp, row, -1, w), col, -2, h)


def _pad_kernel(k: torch.Tensor, size: int) -> torch.Tensor:
    p = (size - k.shape[-1]) // 2
    return F.pad(k, (p, p, p, p))


def filter2d_each(x: torch.Tensor, kernels: Sequence[torch.Tensor]) -> torch.Tensor:
    """filter2d with one kernel of its own size per sample. Small kernels (trimmed of
    negligible rings) are convolved directly, grouped by size, so their cost follows
    their true support; all large ones share one FFT pass."""
    out = torch.empty_like(x)
    trimmed = [trim_kernel(k, TRIM_MASS) for k in kernels]
    groups: dict[int, list[int]] = {}
    for i, t in enumerate(trimmed):
        groups.setdefault(min(t.shape[-1], FFT_MIN_KERNEL), []).append(i)
    for size, idx in groups.items():
        big = max(trimmed[i].shape[-1] for i in idx)
        sel = torch.tensor(idx, device=x.device)
        out[sel] = _filter2d_sized(x[sel], torch.stack([_pad_kernel(trimmed[i], big) for i in idx]))
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


def _filter_rows(x: torch.Tensor, g: torch.Tensor, block: int = 32) -> torch.Tensor:
    """Correlate the last axis with taps g (reflect-101). The axis is cut into blocks
    with their 2r-wide margins and every block is one row of a single matrix product,
    which runs at GEMM speed where a one-channel convolution with a long kernel does not."""
    r = g.numel() // 2
    n = x.shape[-1]
    nb = -(-n // block)
    # One pad: the columns past the reflected margin only feed outputs that are cut off.
    xp = _pad_axis(x, -1, r, nb * block - n)
    windows = xp.unfold(-1, block + 2 * r, block).reshape(-1, block + 2 * r)
    y = windows @ _band_matrix(g, block).to(x)
    return y.reshape(*x.shape[:-1], nb * block)[..., :n]


def _filter_cols(x: torch.Tensor, g: torch.Tensor, block: int = 32) -> torch.Tensor:
    """_filter_rows along the second-last axis without transposing: each block of output
    rows is the band matrix's transpose times an overlapping window of padded rows (a
    strided view), so whole image rows stay the contiguous GEMM operand."""
    r = g.numel() // 2
    lead, (n, w) = x.shape[:-2], x.shape[-2:]
    nb = -(-n // block)
    xp = _pad_axis(x, -2, r, nb * block - n).reshape(-1, nb * block + 2 * r, w)
    windows = xp.as_strided((xp.shape[0], nb, block + 2 * r, w), (xp.stride(0), block * w, w, 1))
    y = torch.matmul(_band_matrix(g, block).to(x).t(), windows)
    return y.reshape(*lead, nb * block, w)[..., :n, :]


def separable_blur(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Blur every channel with the outer product g gᵀ (two 1-D passes, reflect-101)."""
    taps = g.detach().cpu().tolist()
    return separable_filter(x, taps, taps)


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
                radius: int = 50, sigma: float = 0.0, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Unsharp masking as Real-ESRGAN sharpens its ground truth. x: (B, C, H, W); out: where
    to write the result (saves a copy when the caller keeps it in a batch tensor).

    Only pixels whose residual exceeds `threshold` (0-255 scale) are sharpened, and the
    mask itself is blurred so the sharpened areas blend in. sigma 0 means OpenCV's
    choice for the kernel size: 0.3·((k − 1)/2 − 1) + 0.8 (8.0 for radius 50)."""
    k = radius + 1 if radius % 2 == 0 else radius  # OpenCV-style: even radius -> odd size
    if sigma <= 0:
        sigma = 0.3 * ((k - 1) * 0.5 - 1) + 0.8
    g = gaussian_1d(sigma, k // 2)
    residual = x - separable_blur(x, g)
    mask = torch.abs(residual)
    mask.mul_(255.0).gt_(threshold)  # 1.0 where sharpened, else 0.0
    soft = separable_blur(mask, g)
    # soft·sharp + (1 − soft)·x as x + soft·(sharp − x), in place: each pass over the
    # image is memory-bound, and the fused form needs half of them (measured 2.6 -> 1.0 ms).
    residual.mul_(weight).add_(x).clamp_(0, 1).sub_(x)
    return torch.addcmul(x, residual, soft, out=out)
