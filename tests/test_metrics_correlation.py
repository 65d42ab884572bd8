"""PLCC / SRCC / KRCC against scipy and against a brute-force pair count."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from uare import metrics


@pytest.fixture
def scores(rng):
    mos = rng.uniform(1, 5, 60)
    pred = np.round(np.exp(mos) + rng.normal(0, 8, 60), 0)  # monotone, non-linear, with ties
    return pred, mos


def test_plcc_and_srcc_agree_with_scipy_including_ties(scores):
    pred, mos = scores
    assert len(np.unique(pred)) < len(pred)  # the fixture really has ties
    assert metrics.plcc(pred, mos) == pytest.approx(stats.pearsonr(pred, mos)[0], abs=1e-12)
    assert metrics.srcc(pred, mos) == pytest.approx(stats.spearmanr(pred, mos)[0], abs=1e-12)


def test_krcc_equals_tau_b_counted_pair_by_pair(scores):
    pred, mos = scores
    conc = disc = tie_x = tie_y = 0
    for i, j in itertools.combinations(range(len(pred)), 2):
        sx, sy = np.sign(pred[i] - pred[j]), np.sign(mos[i] - mos[j])
        conc += sx * sy > 0
        disc += sx * sy < 0
        tie_x += sx == 0 and sy != 0
        tie_y += sy == 0 and sx != 0
    tau_b = (conc - disc) / np.sqrt((conc + disc + tie_x) * (conc + disc + tie_y))
    assert metrics.krcc(pred, mos) == pytest.approx(tau_b, abs=1e-12)


def test_logistic_fit_raises_plcc_on_a_nonlinear_monotone_relation(scores):
    pred, mos = scores
    raw = metrics.plcc(pred, mos)
    assert metrics.plcc(pred, mos, fit="logistic4") > raw
    assert metrics.plcc(pred, mos, fit="logistic5") > raw


def test_nan_pairs_are_dropped_and_bad_lengths_raise(scores):
    pred, mos = scores
    with_nan = pred.copy()
    with_nan[:5] = np.nan
    assert metrics.srcc(with_nan, mos) == pytest.approx(metrics.srcc(pred[5:], mos[5:]))
    with pytest.raises(ValueError, match="length"):
        metrics.plcc(pred, mos[:-1])
    with pytest.raises(ValueError, match="constant"):
        metrics.plcc(np.ones(10), np.arange(10))
