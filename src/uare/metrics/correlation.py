"""Correlation between predicted quality scores and human opinion scores.

SRCC and KRCC are rank statistics; PLCC is linear and, as in pyiqa's benchmark, has no
correction by default. `fit="logistic4"` (VQEG) or `"logistic5"` (the DBCNN form) first
maps the predictions through a fitted monotonic logistic, as many IQA papers do.
"""
from __future__ import annotations

import numpy as np
from scipy import optimize, stats


def _vectors(x, y) -> tuple[np.ndarray, np.ndarray]:
    """Two equally long 1-D float arrays with pairs containing NaN dropped."""
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"score lists differ in length: {x.size} vs {y.size}")
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    if x.size < 3:
        raise ValueError(f"need at least 3 pairs of finite scores, got {x.size}")
    return x, y


def logistic4(x, b1, b2, b3, b4):
    """VQEG: (b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2."""
    return (b1 - b2) / (1 + np.exp(-(x - b3) / np.abs(b4))) + b2


def logistic5(x, b1, b2, b3, b4, b5):
    """DBCNN: b1 * (0.5 - 1 / (1 + exp(b2 (x - b3)))) + b4 x + b5."""
    return b1 * (0.5 - 1 / (1 + np.exp(b2 * (x - b3)))) + b4 * x + b5


def fit_logistic(x, y, kind: str = "logistic4") -> np.ndarray:
    """Predictions x mapped onto the scale of y by a least-squares logistic fit."""
    x, y = _vectors(x, y)
    if kind == "logistic4":
        fn, p0 = logistic4, [y.max(), y.min(), x.mean(), x.std() / 4 or 1.0]
    elif kind == "logistic5":
        fn, p0 = logistic5, [10.0, 0.0, y.mean(), 0.1, 0.1]
    else:
        raise ValueError(f"unknown fit {kind!r}; use None, 'logistic4' or 'logistic5'")
    params, _ = optimize.curve_fit(fn, x, y, p0=p0, maxfev=20000)
    return fn(x, *params)


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    xc, yc = x - x.mean(), y - y.mean()
    denom = np.sqrt((xc @ xc) * (yc @ yc))
    if denom == 0:
        raise ValueError("correlation is undefined when one score list is constant")
    return float(np.clip((xc @ yc) / denom, -1.0, 1.0))


def plcc(x, y, fit: str | None = None) -> float:
    """Pearson linear correlation, optionally after a 4- or 5-parameter logistic fit."""
    x, y = _vectors(x, y)
    if fit is not None:
        x = fit_logistic(x, y, fit)
    return _pearson(x, y)


def srcc(x, y) -> float:
    """Spearman rank-order correlation (Pearson of average ranks, so ties are handled)."""
    x, y = _vectors(x, y)
    return _pearson(stats.rankdata(x), stats.rankdata(y))


def krcc(x, y) -> float:
    """Kendall rank-order correlation (tau-b; scipy's O(n log n) count)."""
    x, y = _vectors(x, y)
    return float(stats.kendalltau(x, y)[0])
