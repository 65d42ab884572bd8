"""Reading and writing images safely.

Every command reads through `load_image` and writes through `save_image`, so that bad
input always gets an error that names the file and the reason, decompression bombs are
refused before decoding, and an output is never half-written or written over an input.
"""
from __future__ import annotations

import io
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Iterable, Union

import numpy as np
from PIL import Image

# Pillow's own bomb guard only warns below 2x its limit; we refuse clearly instead.
MAX_PIXELS = int(os.environ.get("UARE_MAX_PIXELS", 64_000_000))
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

ImageLike = Union[str, os.PathLike, Image.Image, np.ndarray]


class ImageError(ValueError):
    """An input image that cannot be used; the message names the file and the reason."""


def _to_rgb(img: Image.Image, name: str) -> Image.Image:
    """Grey, palette, RGBA and 16-bit images become 8-bit RGB (alpha composited on white)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if arr.max() > 255 else 255.0
        arr = np.clip(np.round(arr / top * 255.0), 0, 255).astype(np.uint8)
        img = Image.fromarray(arr, mode="L")
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        top = 1.0 if arr.max() <= 1.0 else 255.0
        img = Image.fromarray(np.clip(np.round(arr / top * 255), 0, 255).astype(np.uint8), mode="L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if img.mode != "RGB":
        img = img.convert("RGB")
    return img


def array_to_pil(arr: np.ndarray, name: str = "<array>") -> Image.Image:
    """HxW or HxWxC uint8 (or float in [0, 1]) array -> RGB PIL image."""
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise ImageError(f"{name}: expected an HxW or HxWx{{1,3,4}} array, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating):
            arr = np.clip(np.round(arr * 255.0), 0, 255).astype(np.uint8)
        elif arr.dtype == np.uint16:
            arr = np.round(arr.astype(np.float64) / 257.0).astype(np.uint8)
        else:
            raise ImageError(f"{name}: unsupported array dtype {arr.dtype}")
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    mode = "RGBA" if arr.shape[2] == 4 else "RGB"
    return _to_rgb(Image.fromarray(arr, mode=mode), name)


def load_image(image: ImageLike, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Any supported input -> 8-bit RGB PIL image.

    Raises ImageError (naming the file) for missing, empty, corrupt, unsupported or
    too-large files. The size check reads only the header, so a huge-dimension file is
    refused before any pixel is decoded.
    """
    if isinstance(image, Image.Image):
        return _to_rgb(image, "<PIL image>")
    if isinstance(image, np.ndarray):
        return array_to_pil(image)
    path = Path(image)
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if path.is_dir():
        raise ImageError(f"{path}: is a folder, not an image")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: empty file")
    return _decode(path, str(path), max_pixels)


def load_image_bytes(data: bytes, name: str = "<upload>", max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Encoded image bytes (an upload) -> 8-bit RGB PIL image, with load_image's checks."""
    if not data:
        raise ImageError(f"{name}: empty file")
    return _decode(io.BytesIO(data), name, max_pixels)


def _decode(source, name: str, max_pixels: int) -> Image.Image:
    """Open a path or file object; the size check reads only the header."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as img:
                w, h = img.size
                if w * h > max_pixels:
                    raise ImageError(
                        f"{name}: {w}x{h} = {w * h:,} pixels is over the limit of {max_pixels:,} "
                        "(set UARE_MAX_PIXELS to raise it)"
                    )
                img.load()
                return _to_rgb(img, name)
    except ImageError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageError(f"{name}: refused as a decompression bomb ({e})") from None
    except Image.UnidentifiedImageError:
        raise ImageError(f"{name}: cannot read image (not a format Pillow recognises, or corrupt)") from None
    except Exception as e:  # PIL raises many types for corrupt data
        raise ImageError(f"{name}: cannot read image ({type(e).__name__}: {e})") from None


def to_array(image: ImageLike) -> np.ndarray:
    """Any supported input -> HxWx3 uint8 array."""
    return np.asarray(load_image(image), dtype=np.uint8)


def list_images(path: Union[str, os.PathLike], recursive: bool = False) -> list[Path]:
    """Image files in a folder (sorted), or the one file given."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise ImageError(f"{path}: no such file or folder")
    pattern = "**/*" if recursive else "*"
    return sorted(p for p in path.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def expand_inputs(inputs: Iterable[Union[str, os.PathLike]]) -> list[Path]:
    """Files and folders from the command line -> a flat list of files (folders expanded)."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        out.extend(list_images(p) if p.is_dir() else [p])
    return out


def atomic_write(path: Union[str, os.PathLike], write) -> Path:
    """Call write(tmp_path) on a temporary file beside `path`, then rename it into place.

    Every file the project writes goes through here, so a killed job never leaves a
    half-written output under the real name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        # mkstemp makes the file private; outputs are ordinary files (umask applies)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def save_image(image: Union[Image.Image, np.ndarray], path: Union[str, os.PathLike],
               protect: Iterable[Union[str, os.PathLike]] = (), **save_kwargs) -> Path:
    """Write an image atomically (temporary name, then rename).

    `protect` lists input paths that must never be overwritten; writing onto one raises.
    The format follows the suffix (PNG when there is none).
    """
    path = Path(path)
    for p in protect:
        if Path(p).exists() and path.exists() and os.path.samefile(p, path):
            raise ImageError(f"{path}: refusing to overwrite an input image")
    img = image if isinstance(image, Image.Image) else array_to_pil(image)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".tif": "TIFF",
           ".tiff": "TIFF", ".webp": "WEBP"}.get(path.suffix.lower())
    if fmt is None:
        path = path.with_suffix(".png")
        fmt = "PNG"
    if fmt == "JPEG":
        save_kwargs.setdefault("quality", 95)
    return atomic_write(path, lambda tmp: img.save(tmp, format=fmt, **save_kwargs))


def write_text(path: Union[str, os.PathLike], text: str) -> Path:
    """Write a text file atomically."""
    def w(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    return atomic_write(Path(path), w)


def write_json(path: Union[str, os.PathLike], obj) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def append_jsonl(path: Union[str, os.PathLike], obj) -> None:
    """Append one record and flush, so a killed batch keeps every finished line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(obj) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: Union[str, os.PathLike]) -> list[dict]:
    """Read records, ignoring a torn last line left by a killed writer."""
    path = Path(path)
    if not path.exists():
        return []
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out
