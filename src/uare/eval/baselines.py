"""Classical baselines: the methods a user could run without any learned model.

bicubic (sr, and the identity "do nothing" for the other tasks), OpenCV non-local means
(denoise/dejpeg), Richardson-Lucy (deblur, Gaussian PSF), dark-channel-prior dehazing,
and gamma / CLAHE (low light). Everything except non-local means and CLAHE is numpy +
scipy only, so CI can test the plug-in machinery with real methods.
"""
from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

from .methods import Method, MethodSpec, MethodUnavailable, register_method


def _to_float(image: Image.Image) -> np.ndarray:
    """PIL RGB -> HxWx3 float32 in [0, 1]."""
    return np.asarray(image, dtype=np.float32) / 255.0


def _to_pil(arr: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.round(arr * 255.0), 0, 255).astype(np.uint8), "RGB")


def _upscale(image: Image.Image, scale: int) -> Image.Image:
    if scale == 1:
        return image
    return image.resize((image.width * scale, image.height * scale), Image.BICUBIC)


def _import_cv2(method: str):
    try:
        import cv2
    except ImportError:
        raise MethodUnavailable(
            f"{method} needs OpenCV: pip install 'uare[eval]' (opencv-python-headless)") from None
    return cv2


@register_method("bicubic")
class Bicubic(Method):
    """Bicubic upscaling (PIL); returns the input unchanged for non-SR tasks."""

    name = "bicubic"
    tasks = frozenset({"auto"})

    def __init__(self, spec: MethodSpec):
        super().__init__(spec)
        self.check_options(())

    def restore(self, image, task, scale=1):
        return _upscale(image, scale)


@register_method("nlmeans")
class NonLocalMeans(Method):
    """OpenCV fast non-local means (colour); option h=strength (default 10)."""

    name = "nlmeans"
    tasks = frozenset({"denoise", "dejpeg", "mixed", "sr"})

    def __init__(self, spec: MethodSpec):
        super().__init__(spec)
        self.check_options(("h",))
        self.h = self.option("h", 10.0, float)
        self.cv2 = _import_cv2("nlmeans")

    def restore(self, image, task, scale=1):
        arr = np.ascontiguousarray(np.asarray(image, dtype=np.uint8))
        out = self.cv2.fastNlMeansDenoisingColored(arr, None, self.h, self.h, 7, 21)
        return _upscale(Image.fromarray(out, "RGB"), scale)


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    # Separable and reflect-padded: no FFT wrap-around or zero borders creeping inwards.
    return ndimage.gaussian_filter(x, sigma=(sigma, sigma, 0), mode="reflect", truncate=3.0)


def richardson_lucy(img: np.ndarray, sigma: float, iterations: int) -> np.ndarray:
    """img: HxWx3 float in [0, 1], blurred by a Gaussian PSF of `sigma` -> deconvolved.
    The PSF is symmetric, so the correlation step uses the same filter."""
    img = img.astype(np.float32)
    est = img.copy()
    for _ in range(iterations):
        est = est * _blur(img / np.maximum(_blur(est, sigma), 1e-6), sigma)
    return np.clip(est, 0.0, 1.0)


@register_method("richardson_lucy")
class RichardsonLucy(Method):
    """Richardson-Lucy deconvolution with a Gaussian PSF; options sigma (1.5), iters (15)."""

    name = "richardson_lucy"
    tasks = frozenset({"deblur", "mixed", "sr"})

    def __init__(self, spec: MethodSpec):
        super().__init__(spec)
        self.check_options(("sigma", "iters"))
        self.sigma = self.option("sigma", 1.5, float)
        self.iters = self.option("iters", 15, int)

    def restore(self, image, task, scale=1):
        # For SR: upscale first, then deconvolve the blur bicubic leaves behind.
        arr = _to_float(_upscale(image, scale))
        return _to_pil(richardson_lucy(arr, self.sigma, self.iters))


def _box(x: np.ndarray, r: int) -> np.ndarray:
    return ndimage.uniform_filter(x, size=(2 * r + 1, 2 * r + 1) + (1,) * (x.ndim - 2), mode="reflect")


def guided_filter(guide: np.ndarray, src: np.ndarray, r: int, eps: float) -> np.ndarray:
    """Grey guided filter (He et al.): guide, src HxW float -> HxW, edge-aware smoothing."""
    mean_i, mean_p = _box(guide, r), _box(src, r)
    cov_ip = _box(guide * src, r) - mean_i * mean_p
    var_i = _box(guide * guide, r) - mean_i ** 2
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return _box(a, r) * guide + _box(b, r)


def dark_channel_dehaze(img: np.ndarray, patch: int = 15, omega: float = 0.95,
                        t0: float = 0.1) -> np.ndarray:
    """img: HxWx3 float [0, 1] -> dehazed HxWx3 (dark channel prior, He et al. 2009)."""
    dark = ndimage.minimum_filter(img.min(axis=2), size=patch, mode="nearest")
    # Atmospheric light: the brightest input pixel among the 0.1% haziest (darkest-channel top).
    n = max(1, dark.size // 1000)
    idx = np.argpartition(dark.ravel(), -n)[-n:]
    flat = img.reshape(-1, 3)
    airlight = flat[idx[np.argmax(flat[idx].sum(axis=1))]]
    norm = img / np.maximum(airlight, 1e-3)
    trans = 1.0 - omega * ndimage.minimum_filter(norm.min(axis=2), size=patch, mode="nearest")
    trans = guided_filter(img.mean(axis=2), trans, r=max(8, patch * 2), eps=1e-3)
    trans = np.maximum(trans, t0)[..., None]
    return np.clip((img - airlight) / trans + airlight, 0.0, 1.0)


@register_method("dcp")
class DarkChannelDehaze(Method):
    """Dark-channel-prior dehazing with guided-filter refinement; options patch (15), omega (0.95)."""

    name = "dcp"
    tasks = frozenset({"dehaze", "mixed"})

    def __init__(self, spec: MethodSpec):
        super().__init__(spec)
        self.check_options(("patch", "omega"))
        self.patch = self.option("patch", 15, int)
        self.omega = self.option("omega", 0.95, float)

    def restore(self, image, task, scale=1):
        out = dark_channel_dehaze(_to_float(image), self.patch, self.omega)
        return _upscale(_to_pil(out), scale)


def auto_gamma(img: np.ndarray, target: float = 0.45) -> np.ndarray:
    """Pick the gamma that brings the mean luminance to `target`, apply it to all channels."""
    lum = float(np.clip((img @ np.array([0.299, 0.587, 0.114], np.float32)).mean(), 1e-4, 0.9999))
    gamma = np.log(target) / np.log(lum)
    return np.clip(img, 0.0, 1.0) ** gamma


@register_method("gamma")
class Gamma(Method):
    """Automatic gamma correction to a target mean brightness; option target (0.45)."""

    name = "gamma"
    tasks = frozenset({"lowlight", "mixed"})

    def __init__(self, spec: MethodSpec):
        super().__init__(spec)
        self.check_options(("target",))
        self.target = self.option("target", 0.45, float)

    def restore(self, image, task, scale=1):
        return _upscale(_to_pil(auto_gamma(_to_float(image), self.target)), scale)


@register_method("clahe")
class Clahe(Method):
    """OpenCV CLAHE on the L channel of Lab, after auto gamma; option clip (2.0)."""

    name = "clahe"
    tasks = frozenset({"lowlight", "mixed", "dehaze"})

    def __init__(self, spec: MethodSpec):
        super().__init__(spec)
        self.check_options(("clip", "gamma"))
        self.clip = self.option("clip", 2.0, float)
        self.gamma = self.option("gamma", True, lambda v: str(v).lower() not in ("0", "false", "no"))
        self.cv2 = _import_cv2("clahe")

    def restore(self, image, task, scale=1):
        cv2 = self.cv2
        arr = _to_float(image)
        if self.gamma:
            arr = auto_gamma(arr)
        lab = cv2.cvtColor(np.round(arr * 255).astype(np.uint8), cv2.COLOR_RGB2LAB)
        clahe = cv2.createCLAHE(clipLimit=self.clip, tileGridSize=(8, 8))
        lab[..., 0] = clahe.apply(np.ascontiguousarray(lab[..., 0]))
        return _upscale(Image.fromarray(cv2.cvtColor(lab, cv2.COLOR_LAB2RGB), "RGB"), scale)
