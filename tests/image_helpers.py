"""Test images: degraded copies of a photo (noise and Gaussian blur), a ramp."""
import numpy as np
from scipy.ndimage import gaussian_filter


def noisy_and_blurred(img: np.ndarray, rng: np.random.Generator, noise_sigma: float,
                      blur_sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """uint8 HxWx3 -> (with Gaussian noise, Gaussian-blurred per channel), both uint8."""
    noisy = np.clip(img + rng.normal(0, noise_sigma, img.shape), 0, 255).astype(np.uint8)
    blurred = np.stack([gaussian_filter(img[..., c].astype(float), blur_sigma)
                        for c in range(img.shape[2])], -1)
    return noisy, np.round(blurred).astype(np.uint8)


def ramp(side: int = 128) -> np.ndarray:
    """uint8 side x side x 3, red = 2 x column, green = 2 x row: a crop's red span tells
    how many source pixels it covers."""
    x = np.arange(side, dtype=np.uint8) * 2
    return np.ascontiguousarray(np.stack(np.broadcast_arrays(
        x[None, :], x[:, None], np.zeros((side, side), np.uint8)), -1))
