"""Luma conversions used by the metric conventions.

Two definitions of "the Y channel" are in use and differ by about 1.32 dB in PSNR:
- SR literature / BasicSR / MATLAB `rgb2ycbcr`: BT.601 limited range, Y in [16, 235];
- pyiqa / MATLAB `rgb2gray`: the Y of YIQ, full range, Y in [0, 255].
"""
from __future__ import annotations

import numpy as np

# BT.601 studio-range weights for RGB on the 0-255 scale (65.481/255 etc.).
_YCBCR_Y = np.array([65.481, 128.553, 24.966]) / 255.0
_YIQ_Y = np.array([0.299, 0.587, 0.114])


def rgb_to_y(pixels: np.ndarray, space: str = "ycbcr", rounded: bool = False) -> np.ndarray:
    """(...,3) RGB on the 0-255 scale -> (...) luma on the 0-255 scale, float64.

    space="ycbcr": 16 + BT.601 limited range (MATLAB rgb2ycbcr), space="yiq": full range.
    rounded=True mimics MATLAB working on uint8 (rgb2ycbcr / rgb2gray of a uint8 image).
    """
    if space == "ycbcr":
        y = pixels @ _YCBCR_Y + 16.0
    elif space == "yiq":
        y = pixels @ _YIQ_Y
    else:
        raise ValueError(f"unknown colour space {space!r} (use 'ycbcr' or 'yiq')")
    return np.round(y) if rounded else y
