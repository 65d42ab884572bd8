"""NIQE and the MATLAB-style resize behind its second scale."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from uare import metrics
from uare.metrics import MetricInputError
from uare.metrics.niqe import block_features, niqe_features
from uare.metrics.nss import aggd_fit, to_blocks
from uare.metrics.resize import imresize, resize_matrix
from image_helpers import noisy_and_blurred
from script_helpers import load_script



def _matlab_weights_by_loop(in_len: int, out_len: int, scale: float) -> np.ndarray:
    """MATLAB's contributions() written out sample by sample, as the reference."""
    width = 4.0 / scale if scale < 1 else 4.0
    mat = np.zeros((out_len, in_len))
    for i in range(1, out_len + 1):
        u = i / scale + 0.5 * (1 - 1 / scale)
        for j in range(int(np.floor(u - width / 2)), int(np.floor(u - width / 2)) + int(np.ceil(width)) + 2):
            d = abs(u - j) * min(scale, 1.0)
            k = (1.5 * d ** 3 - 2.5 * d ** 2 + 1) if d <= 1 else (-0.5 * d ** 3 + 2.5 * d ** 2 - 4 * d + 2) if d <= 2 else 0
            src = j - 1
            while not 0 <= src < in_len:  # symmetric padding
                src = -src - 1 if src < 0 else 2 * in_len - src - 1
            mat[i - 1, src] += k * min(scale, 1.0)
    return mat / mat.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("in_len,scale", [(96, 0.5), (37, 0.5), (10, 2.0), (25, 0.3)])
def test_resize_matrix_matches_matlab_contributions(in_len, scale):
    out_len = int(np.ceil(in_len * scale))
    expected = _matlab_weights_by_loop(in_len, out_len, scale)
    assert np.allclose(resize_matrix(in_len, out_len, scale), expected, atol=1e-12)


def test_imresize_keeps_constants_and_has_matlab_output_size(rng):
    img = np.full((101, 57), 42.0)
    out = imresize(img, 0.5)
    assert out.shape == (51, 29) and np.allclose(out, 42.0)
    assert imresize(rng.random((3, 10, 12)), 2.0).shape == (3, 20, 24)


def test_aggd_fit_recovers_a_gaussian_shape_and_flags_one_sided_sets(rng):
    samples = rng.normal(0, 2.0, size=(3, 200_000))
    alpha, bl, br = aggd_fit(samples)
    assert np.allclose(alpha, 2.0, atol=0.03)
    assert np.allclose(bl, 2.0 * np.sqrt(2), rtol=0.02) and np.allclose(br, bl, rtol=0.02)
    a, _, _ = aggd_fit(np.abs(samples[:1]))
    assert np.isnan(a).all()


def test_block_features_equal_a_block_by_block_loop(astronaut):
    y = astronaut[:192, :288, 1].astype(np.float64)
    blocks = to_blocks(y / 50 - 2, 96, 96)
    batched = block_features(blocks)
    one_by_one = np.concatenate([block_features(b[None]) for b in blocks])
    assert batched.shape == (6, 18) and np.allclose(batched, one_by_one, equal_nan=True)
    assert niqe_features(y).shape == (6, 36)


def test_niqe_rises_with_noise_and_with_blur(coffee, rng):
    clean = metrics.niqe(coffee)
    noisy, blurred = noisy_and_blurred(coffee, rng, noise_sigma=15, blur_sigma=2.5)
    assert metrics.niqe(noisy) > clean + 1
    assert metrics.niqe(blurred) > clean + 1


def test_niqe_refuses_images_smaller_than_two_blocks(small_photo):
    with pytest.raises(MetricInputError, match="96x96"):
        metrics.niqe(small_photo)


def test_niqe_matches_basicsr_within_one_percent_when_its_sdist_is_present(coffee):
    bench = load_script("bench/metrics.py", "uare_bench_metrics")
    root = bench.find_sdist(None)
    if root is None:
        pytest.skip("BasicSR 1.4.2 sdist not found (see bench/metrics.py for how to fetch it)")
    pytest.importorskip("cv2", reason="BasicSR's code imports OpenCV")
    try:
        basicsr_niqe, _ = bench.load_basicsr(root)
        theirs = basicsr_niqe.calculate_niqe(coffee[..., ::-1].copy(), crop_border=0)
    finally:  # the stubs must not leak into other tests
        for name in [m for m in sys.modules if m == "basicsr" or m.startswith("basicsr.")]:
            del sys.modules[name]
    assert metrics.niqe(coffee) == pytest.approx(theirs, rel=0.01)
