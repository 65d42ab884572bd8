"""uare.degradations.camera: noise added to the Bayer mosaic before demosaicking comes out
correlated, so a finest-scale estimator (uare.fidelity.noise_sigma) reads it low, as it
reads real camera noise (CC15); isp_noise's trip through a camera's processing keeps the
clean image, and its noise grows with the shot factor and is correlated across the colours."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from uare.degradations.camera import bayer_masks, camera_noise, demosaic, isp_noise
from uare.fidelity import noise_sigma


def test_the_mosaic_records_one_colour_a_site_and_demosaicking_keeps_flat_colour():
    masks = bayer_masks(6, 8)
    assert torch.equal(masks.sum(0), torch.ones(6, 8)) and masks[1].mean() == 0.5
    colour = torch.tensor([0.2, 0.5, 0.8]).view(3, 1, 1).expand(3, 6, 8)
    out = demosaic((colour * masks).sum(0), masks)
    # reflected borders keep the mosaic's phase, so the edges are exact too
    assert torch.allclose(out, colour, atol=1e-6)


def test_camera_noise_is_seeded_and_leaves_the_clean_trip_alone(astronaut):
    crop = np.ascontiguousarray(astronaut[100:228, 100:228])
    clean, noisy, params = camera_noise(crop, np.random.default_rng(3))
    again = camera_noise(crop, np.random.default_rng(3))
    assert np.array_equal(noisy, again[1]) and np.array_equal(clean, again[0]) and params == again[2]
    assert clean.shape == noisy.shape == crop.shape and noisy.dtype == np.uint8
    # without noise the trip only loses some colour detail: the clean reference stays close
    assert np.abs(clean.astype(int) - crop).mean() < 6
    assert not np.array_equal(clean, noisy)
    with pytest.raises(ValueError, match="uint8"):
        camera_noise(crop.astype(np.float32), np.random.default_rng(0))


@pytest.mark.parametrize("smooth", [0.0, 1.0])
def test_the_noise_is_correlated_and_reads_low_to_a_finest_scale_estimate(astronaut, smooth):
    flat = np.full((128, 128, 3), 110, np.uint8)
    clean, noisy, _ = camera_noise(flat, np.random.default_rng(0), shot=4e-3, read_share=0.01, smooth=smooth)
    luma = lambda a: a.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    n = luma(noisy) - luma(clean)
    lag1 = np.corrcoef(n[:, :-1].ravel(), n[:, 1:].ravel())[0, 1]
    assert lag1 > (0.6 if smooth else 0.3)   # white noise: ~0
    est = noise_sigma(torch.from_numpy(luma(noisy) / 255.0)[None].float()) * 255
    assert n.std() > (4.0 if smooth else 2.0) * est   # white noise: 1.0


def test_isp_noise_is_seeded_and_its_clean_trip_keeps_the_image(astronaut):
    crop = np.ascontiguousarray(astronaut[100:228, 100:228])
    clean, noisy, params = isp_noise(crop, np.random.default_rng(5))
    again = isp_noise(crop, np.random.default_rng(5))
    assert np.array_equal(noisy, again[1]) and np.array_equal(clean, again[0]) and params == again[2]
    assert clean.shape == noisy.shape == crop.shape and noisy.dtype == clean.dtype == np.uint8
    # unprocessing and processing cancel; what is left is the demosaicking's softening and
    # the clipping of colours outside the drawn camera's range (measured: 6.7 grey levels)
    assert np.abs(clean.astype(int) - crop).mean() < 8
    assert not np.array_equal(clean, noisy)
    with pytest.raises(ValueError, match="uint8"):
        isp_noise(crop[..., 0], np.random.default_rng(0))


def test_isp_noise_grows_with_the_shot_factor_and_is_correlated_across_colours():
    flat = np.full((96, 96, 3), 120, np.uint8)
    stds, corr = [], []
    for shot in (1e-4, 1e-3, 1e-2):
        clean, noisy, p = isp_noise(flat, np.random.default_rng(1), shot=shot)
        n = noisy.astype(np.float64) - clean
        stds.append(n.std())
        corr.append(np.corrcoef(n[..., 0].ravel(), n[..., 2].ravel())[0, 1])
    assert stds[0] < stds[1] < stds[2] and stds[2] > 5
    # the colour matrix mixes the channels' noise; white noise drawn apart has none
    assert abs(corr[2]) > 0.1
    qualities = [isp_noise(flat, np.random.default_rng(s))[2]["jpeg"] for s in range(20)]
    assert any(q is None for q in qualities) and any(q is not None and 75 <= q <= 98 for q in qualities)


def test_isp_noise_starts_the_image_anywhere_on_the_colour_pattern():
    """A crop of a photo starts on any site of the sensor's 2x2 pattern (and of the JPEG's
    grid): the phase is drawn, and the red samples' own sites, noisier than the sites where
    red is interpolated, move with it."""
    flat = np.full((32, 32, 3), 128, np.uint8)
    phases = {tuple(isp_noise(flat, np.random.default_rng(s))[2]["phase"]) for s in range(20)}
    assert len(phases) > 8 and all(0 <= a < 8 and 0 <= b < 8 for a, b in phases)
    for phase in ((0, 0), (0, 1), (1, 0), (3, 2)):
        var = np.zeros((2, 2))
        for s in range(20):
            clean, noisy, p = isp_noise(flat, np.random.default_rng(s), shot=4e-3, phase=phase)
            assert clean.shape == noisy.shape == flat.shape and p["phase"] == list(phase)
            red = noisy[..., 0].astype(np.float64) - clean[..., 0]
            var += [[red[i::2, j::2].var() for j in range(2)] for i in range(2)]
        assert np.unravel_index(var.argmax(), var.shape) == (phase[0] % 2, phase[1] % 2), (phase, var)
    with pytest.raises(ValueError, match="phase"):
        isp_noise(flat, np.random.default_rng(0), phase=(8, 0))
