"""scripts/tune_photos.py: the tuning photos (never the dev sets) are rebuilt exactly."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from test_scripts_device import _load

skimage_data = pytest.importorskip("skimage.data")


def test_tune_photos_are_native_centre_crops_and_whole_shrunk_scenes(tmp_path):
    paths = _load("tune_photos.py").write(tmp_path)
    assert sorted(p.parent.name for p in paths) == ["tune-hq"] * 4 + ["tune-small"] * 5 + ["tune-wide"] * 13
    assert all(Image.open(p).size == (256, 256) for p in paths)
    astro = skimage_data.astronaut()                      # 512 x 512
    hq = np.asarray(Image.open(tmp_path / "tune-hq" / "astronaut.png"))
    assert np.array_equal(hq, astro[128:384, 128:384])
    small = np.asarray(Image.open(tmp_path / "tune-small" / "astronaut.png")).astype(float)
    halved = astro.reshape(256, 2, 256, 2, 3).mean((1, 3))   # the whole scene at half size
    assert np.abs(small - halved).mean() < 4
    assert np.array_equal(np.asarray(Image.open(tmp_path / "tune-wide" / "astronaut-native-tl.png")),
                          astro[:256, :256])
    assert not (tmp_path / "tune-wide" / "astronaut-small-left.png").exists()   # square: its centre is all
