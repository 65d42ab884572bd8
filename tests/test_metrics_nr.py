"""PIQE and BRISQUE: MATLAB-structured references, the shipped model, monotonic behaviour."""
from __future__ import annotations

import numpy as np
import pytest

from uare import metrics
from uare.metrics.nss import mscn
from uare.metrics.piqe import piqe_score
from uare.metrics.resize import opencv_resize_half
from image_helpers import noisy_and_blurred


def _piqe_block_loop(grey: np.ndarray) -> float:
    """PIQE written block by block in the structure of MATLAB's piqe.m (the reference)."""
    h, w = grey.shape
    img = np.pad(grey, ((0, -h % 16), (0, -w % 16)), mode="edge")
    norm = mscn(img)
    total, active = 0.0, 0
    for i in range(0, norm.shape[0], 16):
        for j in range(0, norm.shape[1], 16):
            block = norm[i:i + 16, j:j + 16]
            var = block.var(ddof=1)
            if var <= 0.1:
                continue
            active += 1
            edges = [block[0, :], block[:, 15], block[15, :], block[:, 0]]
            impaired = any(e[k:k + 6].std(ddof=1) < 0.1 for e in edges for k in range(11))
            centre = np.concatenate([block[:, 7], block[:, 8]])
            surround = np.delete(np.delete(block, 7, axis=1), 8, axis=1)  # MATLAB's two deletions
            ratio = centre.std(ddof=1) / surround.std(ddof=1)
            ratio = 0.0 if np.isnan(ratio) else ratio
            sigma = np.sqrt(var)
            noisy = sigma > 2 * abs(sigma - ratio) / max(sigma, ratio)
            total += (1 - var) * impaired + var * noisy
    return 100 * (total + 1) / (active + 1)


def test_piqe_equals_the_block_by_block_matlab_structure(coffee, rng):
    grey = np.round(coffee[:200, :250] @ [0.299, 0.587, 0.114])  # not a multiple of 16: padding
    noisy = np.clip(grey + rng.normal(0, 8, grey.shape), 0, 255).round()
    for img in (grey, noisy):
        assert piqe_score(img) == pytest.approx(_piqe_block_loop(img), abs=1e-9)


def test_piqe_is_100_for_a_flat_image_and_rises_with_noise(astronaut, rng):
    assert metrics.piqe(np.full((40, 50, 3), 77, np.uint8)) == pytest.approx(100.0)
    clean = metrics.piqe(astronaut)
    noisy = metrics.piqe(np.clip(astronaut + rng.normal(0, 25, astronaut.shape), 0, 255).astype(np.uint8))
    assert 0 < clean < noisy < 100


def test_opencv_style_half_resize_matches_cv2_when_available(rng):
    cv2 = pytest.importorskip("cv2", reason="OpenCV not installed (optional)")
    for shape in ((64, 64), (101, 57), (7, 5)):
        img = rng.random(shape)
        expected = cv2.resize(img, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_CUBIC)
        assert np.allclose(opencv_resize_half(img), expected, atol=1e-12)


def test_brisque_reproduces_the_brisque_package_on_astronaut(astronaut):
    # 10.79: the `brisque` 0.2.0 package (libsvm) on skimage's astronaut, measured in the
    # offline-assets survey (../shared/docs/offline-assets.md, section A4).
    assert metrics.brisque(astronaut) == pytest.approx(10.79, abs=0.01)


def test_brisque_rises_with_noise_and_blur(coffee, rng):
    clean = metrics.brisque(coffee)
    noisy, blurred = noisy_and_blurred(coffee, rng, noise_sigma=20, blur_sigma=3)
    assert metrics.brisque(noisy) > clean + 10
    assert metrics.brisque(blurred) > clean + 10


def test_nr_metrics_accept_batches_and_crop(small_photo):
    import torch

    t = torch.from_numpy(np.stack([small_photo, small_photo[::-1]])).permute(0, 3, 1, 2).float() / 255
    for name in ("piqe", "brisque"):
        m = metrics.create_metric(name)
        assert (m.mode, m.lower_better) == ("NR", True)
        values = m(t)
        assert values.shape == (2,)
        assert values[0] == pytest.approx(m(small_photo), rel=1e-6)
        assert metrics.create_metric(name, crop_border=8)(small_photo) != pytest.approx(values[0])
