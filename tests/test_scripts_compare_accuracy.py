"""scripts/compare_accuracy.py: the accounting of pairwise accuracy (both orders, ties
half, P given to the better image), with stand-in models."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from script_helpers import load_script

from uare.pipeline import Comparison

acc = load_script("scripts/compare_accuracy.py")


@pytest.fixture()
def photos(tmp_path):
    rng = np.random.default_rng(0)
    out = []
    for k in range(2):
        out.append(tmp_path / f"{k}.png")
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(out[-1])
    return out


class AlwaysA:
    def compare(self, a, b, ref=None, method=None):
        return Comparison("A", 0.9, "", method=method)


class Sharpest:
    """Prefers the image with more pixel-to-pixel change (noise wins, blur loses)."""
    def compare(self, a, b, ref=None, method=None):
        var = [np.abs(np.diff(np.asarray(x, dtype=float), axis=1)).mean() for x in (a, b)]
        return Comparison("A" if var[0] >= var[1] else "B", 0.8, "", method=method)


def test_a_position_bias_scores_a_half_and_ties_count_half(photos):
    got = acc.measure(AlwaysA(), photos, ["answer"], use_ref=True, types=("blur",))
    for label in ("answer", "answer (ref)"):
        won, p, n = got[(label, "blur")]
        assert n == 2 * 2 * 2 and won == 0.5 and p == pytest.approx(0.5)   # 0.9 and 0.1, half each


def test_the_better_image_is_the_cleaner_one(photos):
    got = acc.measure(Sharpest(), photos, ["scores"], use_ref=False, types=("blur", "noise"))
    assert got[("scores", "blur")][0] == 1.0 and got[("scores", "blur")][1] == pytest.approx(0.8)
    assert got[("scores", "noise")][0] == 0.0
    assert "| scores | 1.00 (P 0.80) | 0.00 (P 0.20) | 0.50 (P 0.50) |" in acc.table(got, ("blur", "noise"))
