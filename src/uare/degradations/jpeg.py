"""JPEG compression with a continuous quality, through Pillow (libjpeg).

Real-ESRGAN draws the quality as a real number and runs a differentiable JPEG on the
GPU. We keep libjpeg (exact codec behaviour: 4:2:0 chroma, standard Huffman coding,
real clipping) and reproduce the continuous quality by handing libjpeg the IJG tables
scaled with the continuous factor: at integer qualities >= 50 this is byte-identical to
Pillow's own `quality=`; between them the tables move smoothly instead of in steps.
Measured in bench/degradations.py, the per-image Pillow round trip is a small share of
the Real-ESRGAN pipeline, so a torch DCT port would not pay for its inexactness.
"""
from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image


QUALITY = (10.0, 95.0)  # single-type range: severity 0 -> 95, severity 1 -> 10

# JPEG standard (ITU-T T.81, Annex K) example tables, row-major (natural) order.
_LUMA_BASE = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], dtype=np.float64)
_CHROMA_BASE = np.array([
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99] + [99] * 32, dtype=np.float64)


def quant_tables(quality: float) -> list[list[int]]:
    """IJG quality scaling with a real-valued quality in (0, 100]."""
    if not 0 < quality <= 100:
        raise ValueError(f"JPEG quality must be in (0, 100], got {quality}")
    scale = 5000.0 / quality if quality < 50 else 200.0 - 2.0 * quality
    out = []
    for base in (_LUMA_BASE, _CHROMA_BASE):
        t = np.floor((base * scale + 50.0) / 100.0)
        out.append(np.clip(t, 1, 255).astype(int).tolist())
    return out


def _roundtrip(img: Image.Image, quality: float) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", qtables=quant_tables(quality), subsampling=2)
    buf.seek(0)
    out = Image.open(buf)
    out.load()
    return out if out.mode == "RGB" else out.convert("RGB")


def jpeg_roundtrip_uint8(arr: np.ndarray, quality: float) -> np.ndarray:
    """HxWx3 uint8 -> the same image after JPEG encoding and decoding (4:2:0)."""
    return np.asarray(_roundtrip(Image.fromarray(arr, mode="RGB"), quality))


def jpeg(x: torch.Tensor, quality: float) -> torch.Tensor:
    """(1, 3, H, W) float in [0, 1] -> JPEG-compressed, same layout. The input is clamped
    and rounded to 8 bits first, as any real encoder sees it."""
    # Pillow takes and gives the three channels as planes (merge / split), so the tensor
    # never goes through an interleaved HxWx3 copy in either direction.
    planes = torch.clamp(x[0], 0, 1).mul_(255.0).round_().to(torch.uint8).cpu().numpy()
    img = Image.merge("RGB", [Image.fromarray(p, mode="L") for p in planes])
    out = np.stack([np.asarray(p) for p in _roundtrip(img, quality).split()])
    return (torch.from_numpy(out).float() / 255.0)[None].to(x.device)


def plan_jpeg(severity: float, rng: np.random.Generator) -> list[dict]:
    lo, hi = QUALITY
    return [{"type": "jpeg", "op": "jpeg", "params": {"quality": hi - (hi - lo) * severity}}]


def jpeg_severity(quality: float, qrange: tuple[float, float] = QUALITY) -> float:
    lo, hi = qrange
    return float(np.clip((hi - quality) / (hi - lo), 0.0, 1.0))
