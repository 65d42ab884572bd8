"""Shared fixtures: small images made here or bundled with scikit-image (public domain)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

# Tests must be quiet and quick on 2 cores; torch threads follow OMP_NUM_THREADS.
os.environ.setdefault("UARE_PROGRESS", "0")

SHARED_DATA = Path(os.environ.get("UARE_SHARED_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data")).resolve()


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test with a clear message."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"needs the research data at {p} (absent on this machine)")
    return p


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """512x512x3 uint8, public domain (NASA), bundled with scikit-image."""
    from skimage import data

    return data.astronaut()


@pytest.fixture(scope="session")
def coffee() -> np.ndarray:
    from skimage import data

    return data.coffee()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def small_photo(astronaut) -> np.ndarray:
    """A 128x128 crop with face, fabric and flat background: quick but natural."""
    return np.ascontiguousarray(astronaut[40:168, 160:288])


def pytest_collection_modifyitems(config, items):
    """`slow` tests are opt-in, as pyproject.toml says: run them with `-m slow`."""
    if "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="slow: opt in with `-m slow`")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
