"""Camera noise: shot and read noise added to the raw Bayer mosaic, then demosaicked and
gamma-encoded, as a camera's own pipeline does.

The noise presets add white noise to the finished sRGB pixels. A camera adds it before
demosaicking, which spreads each raw sample over its neighbours (spatially correlated
noise) and before the tone curve (more noise in the shadows than in the highlights, in
sRGB). Real camera noise (CC15, Nam et al. 2016) reads 2.5-4x weaker than it is to an
estimator that looks at the finest scale only (uare.fidelity.noise_sigma), because
demosaicking moved part of it to coarser scales; this is a stand-in for such noise to
train and tune on, not a calibrated model of any camera.

`isp_noise` goes further, as a camera's processing does after the mosaic: white-balance
gains and a colour matrix (which raise the noise and correlate it across the channels: the
cross-channel noise of Nam et al.), stronger smoothing of the chroma than of the luma (a
camera's noise reduction), and JPEG at a camera's high qualities. It is what the denoise
pixel branch trains on (scripts/train_branch.py --type noise --camera).

Not a preset of `uare degrade` (the paper's types are the presets); used by
scripts/train_refiner.py (camera-noise pairs), scripts/train_branch.py and the tune checks.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from .jpeg import jpeg_roundtrip_uint8
from .ops import gaussian_1d, separable_filter

GAMMA = 2.2
# shot-noise variance per unit of linear signal, log-uniform: at mid-grey that is a luma
# std of ~1-7 grey levels after demosaicking (CC15's ISO 3200 photos: ~2.5-4)
SHOT = (2e-4, 8e-3)
# read-noise variance as a share of the shot factor, log-uniform
READ_SHARE = (1e-3, 3e-2)
# std in px of the smoothing of the noise (in-camera noise reduction), uniform
SMOOTH = (0.0, 1.0)

# bilinear demosaicking of an RGGB mosaic: green from its four neighbours, red and blue from
# two or four
_G = torch.tensor([[0.0, 1.0, 0.0], [1.0, 4.0, 1.0], [0.0, 1.0, 0.0]]) / 4
_RB = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 4


def bayer_masks(h: int, w: int) -> torch.Tensor:
    """(3, h, w) 0/1 masks of an RGGB mosaic: which colour each photosite records."""
    m = torch.zeros(3, h, w)
    m[0, 0::2, 0::2] = 1
    m[1, 0::2, 1::2] = 1
    m[1, 1::2, 0::2] = 1
    m[2, 1::2, 1::2] = 1
    return m


def demosaic(raw: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """(h, w) mosaic -> (3, h, w) by bilinear interpolation (reflected borders)."""
    planes = F.pad((raw * masks)[None], (1, 1, 1, 1), mode="reflect")   # (1, 3, h+2, w+2), zeros elsewhere
    kernels = torch.stack([_RB, _G, _RB])[:, None]                      # one (1, 3, 3) per colour
    return F.conv2d(planes, kernels, groups=3)[0]


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """(3, h, w) through a Gaussian of std sigma px (reflected borders)."""
    if sigma <= 0:
        return x
    taps = gaussian_1d(sigma, max(1, math.ceil(3 * sigma))).tolist()
    return separable_filter(x[None], taps, taps)[0]


def camera_noise(image: np.ndarray, rng: np.random.Generator, shot: Optional[float] = None,
                 read_share: Optional[float] = None, smooth: Optional[float] = None
                 ) -> tuple[np.ndarray, np.ndarray, dict]:
    """(H, W, 3) uint8 -> (clean, noisy, parameters drawn). The image goes through the
    camera: linearised, mosaicked, demosaicked, re-encoded; `clean` is that round trip
    without noise (what a mean of many shots gives, as CC15's references are), `noisy`
    the same with shot and read noise added to the mosaic and smoothed by `smooth` px (a
    camera's own noise reduction, which leaves the coarser part)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"camera_noise needs (H, W, 3) uint8 pixels, got {image.shape} {image.dtype}")
    shot = shot if shot is not None else math.exp(rng.uniform(*np.log(SHOT)))
    read_share = read_share if read_share is not None else math.exp(rng.uniform(*np.log(READ_SHARE)))
    smooth = smooth if smooth is not None else float(rng.uniform(*SMOOTH))
    h, w, _ = image.shape
    linear = (torch.from_numpy(image.astype(np.float32) / 255.0).permute(2, 0, 1)) ** GAMMA
    masks = bayer_masks(h, w)
    raw = (linear * masks).sum(0)
    gen = torch.Generator().manual_seed(int(rng.integers(1 << 62)))
    noise = torch.sqrt(shot * raw + shot * read_share) * torch.randn(raw.shape, generator=gen)
    clean = demosaic(raw, masks).clamp(0, 1)
    noisy = (clean + _blur(demosaic(noise, masks), smooth)).clamp(0, 1)
    to_u8 = lambda t: ((t ** (1 / GAMMA)).permute(1, 2, 0).numpy() * 255.0 + 0.5).clip(0, 255).astype(np.uint8)
    return to_u8(clean), to_u8(noisy), {"shot": shot, "read_share": read_share, "smooth": smooth}


# isp_noise's draws (our choices, from how cameras process; not fitted to any dev image).
# White-balance gains of red and blue over green in daylight, uniform
GAINS_RED, GAINS_BLUE = (1.6, 2.4), (1.3, 2.0)
# how far the camera-to-sRGB matrix is from the identity: each off-diagonal entry is
# -U(0, MATRIX) (rows sum to 1, as a matrix that keeps white does)
MATRIX = 0.45
# shot-noise variance per unit of linear raw signal, log-uniform (a luma std after the
# processing of about 0.5-15 grey levels at mid-grey: 47-30 dB PSNR-Y on training crops)
ISP_SHOT = (3e-5, 1e-2)
# std in px of the noise reduction of the luma and of the chroma, uniform
LUMA_SMOOTH, CHROMA_SMOOTH = (0.0, 0.8), (0.0, 2.5)
# the camera's JPEG: this share of images, at a quality uniform in this range
JPEG_SHARE, JPEG_QUALITY = 0.6, (75.0, 98.0)
# BT.601 RGB <-> YCbCr (no offsets: only differences are filtered)
_YCC = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
_RGB = torch.linalg.inv(_YCC)


def _color_matrix(rng: np.random.Generator) -> torch.Tensor:
    off = -rng.uniform(0.0, MATRIX, size=(3, 3))
    np.fill_diagonal(off, 0.0)
    return torch.from_numpy(off + np.diag(1.0 - off.sum(1))).float()


def _smooth_noise(d: torch.Tensor, luma: float, chroma: float) -> torch.Tensor:
    """(3, h, w) sRGB noise -> the same after smoothing its luma and chroma apart."""
    ycc = torch.einsum("ij,jhw->ihw", _YCC, d)
    ycc = torch.cat([_blur(ycc[:1], luma), _blur(ycc[1:], chroma)])
    return torch.einsum("ij,jhw->ihw", _RGB, ycc)


def isp_noise(image: np.ndarray, rng: np.random.Generator, shot: Optional[float] = None,
              phase: Optional[tuple[int, int]] = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """(H, W, 3) uint8 -> (clean, noisy, parameters drawn), through a camera's processing.
    The sRGB image is unprocessed to the raw mosaic (gamma, colour matrix and white
    balance inverted), shot and read noise are added there, and both the clean and the
    noisy mosaic are processed again (demosaic, gains, matrix, gamma); the noise then
    goes through the camera's noise reduction (luma and chroma smoothed apart) and the
    noisy image, with a share JPEG_SHARE, through the camera's JPEG. `clean` is the trip
    without noise or JPEG: what a mean of many shots gives, as CC15's references are.

    `phase` (dy, dx), each 0-7, drawn when None: where the image starts on the sensor's 2x2
    colour pattern and the JPEG's 8x8 grid. A photo's crop starts anywhere on both; a
    branch trained on one phase alone learnt it (session 26: on tune photos 1 px off its
    phase it fell 2.5 dB below the input it had beaten by 1.8)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"isp_noise needs (H, W, 3) uint8 pixels, got {image.shape} {image.dtype}")
    shot = shot if shot is not None else math.exp(rng.uniform(*np.log(ISP_SHOT)))
    p = {"shot": shot, "read_share": math.exp(rng.uniform(*np.log(READ_SHARE))),
         "gains": [float(rng.uniform(*GAINS_RED)), 1.0, float(rng.uniform(*GAINS_BLUE))],
         "luma_smooth": float(rng.uniform(*LUMA_SMOOTH)), "chroma_smooth": float(rng.uniform(*CHROMA_SMOOTH)),
         "jpeg": float(rng.uniform(*JPEG_QUALITY)) if rng.random() < JPEG_SHARE else None}
    cam = _color_matrix(rng)
    gen = torch.Generator().manual_seed(int(rng.integers(1 << 62)))
    dy, dx = phase if phase is not None else (int(rng.integers(8)), int(rng.integers(8)))
    if not (0 <= dy < 8 and 0 <= dx < 8):
        raise ValueError(f"isp_noise: phase is (dy, dx) in 0-7, got {phase}")
    p["phase"] = [dy, dx]
    # the image placed (dy, dx) into the pattern: mirrored rows and columns before it
    placed = np.pad(image, ((dy, 0), (dx, 0), (0, 0)), mode="symmetric")
    gains = torch.tensor(p["gains"]).view(3, 1, 1)
    h, w, _ = placed.shape
    linear = (torch.from_numpy(placed.astype(np.float32) / 255.0).permute(2, 0, 1)) ** GAMMA
    sensor = (torch.einsum("ij,jhw->ihw", torch.linalg.inv(cam), linear) / gains).clamp(0, 1)
    masks = bayer_masks(h, w)
    raw = (sensor * masks).sum(0)
    noisy_raw = raw + torch.sqrt(shot * raw + shot * p["read_share"]) * torch.randn(raw.shape, generator=gen)

    def develop(mosaic: torch.Tensor) -> torch.Tensor:
        rgb = torch.einsum("ij,jhw->ihw", cam, demosaic(mosaic, masks) * gains)
        return rgb.clamp(0, 1) ** (1 / GAMMA)

    clean = develop(raw)
    noisy = clean + _smooth_noise(develop(noisy_raw) - clean, p["luma_smooth"], p["chroma_smooth"])
    to_u8 = lambda t: (t.clamp(0, 1).permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
    clean_u8, noisy_u8 = to_u8(clean), to_u8(noisy)
    if p["jpeg"] is not None:
        noisy_u8 = jpeg_roundtrip_uint8(noisy_u8, p["jpeg"])
    return np.ascontiguousarray(clean_u8[dy:, dx:]), np.ascontiguousarray(noisy_u8[dy:, dx:]), p
