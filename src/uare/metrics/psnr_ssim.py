"""PSNR, SSIM and MS-SSIM under the conventions that published tables use.

convention="sr" (default; alias "basicsr"): the SR-literature protocol of BasicSR and
    the NTIRE MATLAB code. Y of BT.601 limited-range YCbCr, not rounded, float64;
    `crop_border` pixels cut from each side first; PSNR with peak 255 (inf for identical
    images); SSIM with an 11x11 Gaussian window (sigma 1.5), valid mode, no clamping;
    on RGB, SSIM is the mean of the three per-channel values.
convention="matlab": as "sr" but Y is rounded, as MATLAB's rgb2ycbcr on uint8 gives
    (the EDSR/RCAN-era evaluation scripts).
convention="pyiqa": pyiqa's defaults. PSNR on RGB in [0, 1] with 1e-8 added to the MSE
    (80 dB for identical images; y_channel=True gives YIQ-Y, full range, unrounded);
    SSIM on YIQ-Y scaled to 0-255 and rounded, with negative contrast-structure values
    clamped to zero (y_channel=False: per-channel on rounded RGB).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from scipy.ndimage import correlate1d

from .color import rgb_to_y
from .inputs import MetricInputError, crop, pair

CONVENTIONS = ("sr", "basicsr", "matlab", "pyiqa")
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang et al. 2003


def _check_convention(convention: str) -> str:
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; choose one of {', '.join(CONVENTIONS)}")
    return "sr" if convention == "basicsr" else convention


def _planes(pixels: np.ndarray, y_channel: bool, convention: str, for_ssim: bool) -> np.ndarray:
    """(N,H,W,3) 0-255 -> (N,C,H,W) float64 planes on the 0-255 scale, C = 1 or 3."""
    if convention == "pyiqa":
        if y_channel:
            return rgb_to_y(pixels, "yiq", rounded=for_ssim)[:, None]
        out = pixels.transpose(0, 3, 1, 2)
        return np.round(out) if for_ssim else out
    if y_channel:
        return rgb_to_y(pixels, "ycbcr", rounded=convention == "matlab")[:, None]
    return pixels.transpose(0, 3, 1, 2)


def _prepare(pred, ref, y_channel, crop_border, convention, for_ssim):
    convention = _check_convention(convention)
    if y_channel is None:  # pyiqa's psnr defaults to RGB; everything else to Y
        y_channel = not (convention == "pyiqa" and not for_ssim)
    a, b = pair(pred, ref)
    pa = _planes(crop(a.pixels, crop_border), y_channel, convention, for_ssim)
    pb = _planes(crop(b.pixels, crop_border), y_channel, convention, for_ssim)
    return a, pa, pb, convention


def psnr(pred, ref, y_channel: Optional[bool] = True, crop_border: int = 0, convention: str = "sr"):
    """Peak signal-to-noise ratio in dB; a float, or an (N,) array for a batch.

    y_channel=None takes the convention's default (Y for "sr"/"matlab", RGB for "pyiqa").
    """
    batch, pa, pb, convention = _prepare(pred, ref, y_channel, crop_border, convention, False)
    mse = np.mean((pa - pb) ** 2, axis=(1, 2, 3))
    if convention == "pyiqa":
        values = 10.0 * np.log10(1.0 / (mse / 255.0 ** 2 + 1e-8))
    else:
        with np.errstate(divide="ignore"):
            values = 10.0 * np.log10(255.0 ** 2 / mse)
    return batch.result(values)


def gaussian_1d(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    """Normalised 1-D Gaussian; its outer product is MATLAB's fspecial('gaussian')."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(x ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def _filter_valid(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation of (M,H,W) planes with the odd 1-D kernel g.

    scipy's 1-D correlation beat both torch float64 conv2d and OpenCV's filter2D here."""
    r = len(g) // 2
    x = correlate1d(x, g, axis=1, mode="constant")[:, r:-r]
    return correlate1d(x, g, axis=2, mode="constant")[:, :, r:-r]


def _ssim_maps(x: np.ndarray, y: np.ndarray, clamp_cs: bool, data_range: float = 255.0):
    """(M,H,W) float64 -> SSIM map and contrast-structure map, both (M,H-10,W-10)."""
    g = gaussian_1d()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    # One filtering call over all five planes keeps the per-call overhead down.
    mu_x, mu_y, xx, yy, xy = np.split(_filter_valid(np.concatenate([x, y, x * x, y * y, x * y]), g), 5)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    cs = (2 * (xy - mu_xy) + c2) / ((xx - mu_xx) + (yy - mu_yy) + c2)
    if clamp_cs:
        cs = np.maximum(cs, 0.0)
    lum = (2 * mu_xy + c1) / (mu_xx + mu_yy + c1)
    return lum * cs, cs


def _check_size(planes: np.ndarray, need: int, what: str) -> None:
    h, w = planes.shape[-2:]
    if min(h, w) < need:
        raise MetricInputError(f"{what} needs images of at least {need}x{need} pixels, got {w}x{h}")


def _flat(pa: np.ndarray) -> np.ndarray:
    """(N,C,H,W) -> (N*C,H,W)."""
    return np.ascontiguousarray(pa).reshape(-1, *pa.shape[2:])


def ssim(pred, ref, y_channel: Optional[bool] = True, crop_border: int = 0, convention: str = "sr"):
    """Structural similarity (Wang et al. 2004); a float, or an (N,) array for a batch."""
    batch, pa, pb, convention = _prepare(pred, ref, y_channel, crop_border, convention, True)
    _check_size(pa, 11, "SSIM")
    n, c = pa.shape[:2]
    smap, _ = _ssim_maps(_flat(pa), _flat(pb), clamp_cs=convention == "pyiqa")
    return batch.result(smap.mean(axis=(1, 2)).reshape(n, c).mean(axis=1))


def _halve(x: np.ndarray) -> np.ndarray:
    """2x2 average pooling of (M,H,W), dropping an odd last row/column."""
    m, h, w = x.shape
    x = x[:, : h // 2 * 2, : w // 2 * 2]
    return x.reshape(m, h // 2, 2, w // 2, 2).mean(axis=(2, 4))


def ms_ssim(pred, ref, y_channel: Optional[bool] = True, crop_border: int = 0, convention: str = "sr"):
    """Multi-scale SSIM (Wang, Simoncelli, Bovik 2003): 5 scales, 2x2 average pooling
    between scales, the standard exponents. Negative per-scale values are clamped to 0 so
    that the fractional powers stay real. Needs images of at least 176x176."""
    batch, pa, pb, convention = _prepare(pred, ref, y_channel, crop_border, convention, True)
    _check_size(pa, 11 * 2 ** 4, "MS-SSIM")
    n, c = pa.shape[:2]
    x, y = _flat(pa), _flat(pb)
    factors = []
    for level in range(len(MS_SSIM_WEIGHTS)):
        smap, cs = _ssim_maps(x, y, clamp_cs=True)
        last = level == len(MS_SSIM_WEIGHTS) - 1
        factors.append(np.maximum((smap if last else cs).mean(axis=(1, 2)), 0.0))
        if not last:
            x, y = _halve(x), _halve(y)
    values = np.prod(np.stack(factors, axis=1) ** np.array(MS_SSIM_WEIGHTS), axis=1)
    return batch.result(values.reshape(n, c).mean(axis=1))
