"""Turning every accepted image input into one float64 batch.

Metrics accept a path, a PIL image, an HxWx3 uint8 array, or float tensors in [0, 1]
shaped (3,H,W) or (B,3,H,W). They all become an (N,H,W,3) float64 array on the 0-255
scale. Tensors are kept unquantised (pyiqa and BasicSR's `_pt` variants work on the
float values); everything else goes through `uare.imageio.load_image`, which turns grey,
RGBA and 16-bit files into 8-bit RGB and names the file in its errors.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..imageio import ImageError, load_image


class MetricInputError(ValueError):
    """An input that a metric cannot score (bad shape, range or size mismatch)."""


@dataclass
class Batch:
    """`pixels` is (N,H,W,3) float64 on the 0-255 scale; `batched` says whether the caller
    passed a batch (then per-image results come back as an array)."""
    pixels: np.ndarray
    batched: bool
    is_float: bool  # came from a float tensor/array, so values are not on the uint8 grid

    def result(self, values: np.ndarray):
        values = np.asarray(values, dtype=np.float64)
        return values if self.batched else float(values[0])


def _from_tensor(x) -> Batch:
    arr = x.detach().to("cpu").double().numpy()
    return _from_float_array(arr, "tensor")


def _from_float_array(arr: np.ndarray, what: str) -> Batch:
    batched = arr.ndim == 4
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = arr[None]
    elif arr.ndim == 3:  # HxWxC float array in [0, 1]
        arr = arr.transpose(2, 0, 1)[None]
    if arr.ndim != 4 or arr.shape[1] not in (1, 3):
        raise MetricInputError(f"{what}: expected (3,H,W) or (B,3,H,W), got shape {tuple(arr.shape)}")
    if arr.shape[1] == 1:
        arr = np.repeat(arr, 3, axis=1)
    lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
    if lo < -1e-6 or hi > 1 + 1e-6 or not np.isfinite(arr).all():
        raise MetricInputError(f"{what}: float images must lie in [0, 1], got values in [{lo:.4g}, {hi:.4g}]")
    return Batch(np.ascontiguousarray(arr.transpose(0, 2, 3, 1) * 255.0), batched, True)


def to_batch(image) -> Batch:
    """Any accepted input -> Batch. Raises ImageError/MetricInputError naming the input."""
    if type(image).__module__.startswith("torch"):
        return _from_tensor(image)
    if isinstance(image, np.ndarray) and np.issubdtype(image.dtype, np.floating):
        return _from_float_array(image, "array")
    if isinstance(image, np.ndarray) and image.ndim == 4:
        if image.dtype != np.uint8 or image.shape[-1] != 3:
            raise MetricInputError(f"array: a batch must be (B,H,W,3) uint8, got {image.dtype} {image.shape}")
        return Batch(image.astype(np.float64), True, False)
    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3:
        return Batch(image[None].astype(np.float64), False, False)  # skip a PIL round trip
    arr = np.asarray(load_image(image), dtype=np.float64)
    return Batch(arr[None], False, False)


def describe(image) -> str:
    """A short name for error messages."""
    if isinstance(image, (str,)) or hasattr(image, "__fspath__"):
        return str(image)
    return type(image).__name__


def pair(pred, ref) -> tuple[Batch, Batch]:
    """Both sides of a full-reference metric, checked to have the same shape."""
    a, b = to_batch(pred), to_batch(ref)
    if a.pixels.shape[1:] != b.pixels.shape[1:]:
        ha, wa = a.pixels.shape[1:3]
        hb, wb = b.pixels.shape[1:3]
        raise MetricInputError(
            f"{describe(pred)} vs {describe(ref)}: sizes differ ({wa}x{ha} vs {wb}x{hb}); "
            "full-reference metrics need aligned images of the same size")
    if len(a.pixels) != len(b.pixels):
        if len(b.pixels) != 1:
            raise MetricInputError(f"batch sizes differ: {len(a.pixels)} vs {len(b.pixels)}")
        b = Batch(np.broadcast_to(b.pixels, a.pixels.shape), b.batched, b.is_float)
    a.batched = a.batched or b.batched
    return a, b


def crop(pixels: np.ndarray, border: int) -> np.ndarray:
    """Cut `border` pixels from every side of (N,H,W,...) images."""
    if border < 0:
        raise MetricInputError(f"crop_border must be >= 0, got {border}")
    if border == 0:
        return pixels
    h, w = pixels.shape[1:3]
    if 2 * border >= min(h, w):
        raise MetricInputError(f"crop_border={border} leaves nothing of a {w}x{h} image")
    return pixels[:, border:h - border, border:w - border]


__all__ = ["Batch", "MetricInputError", "ImageError", "to_batch", "pair", "crop", "describe"]
