"""Plots of an evaluation (matplotlib, optional: `pip install 'uare[eval]'`).

- metric bars: one panel per metric, one bar per method (mean over images);
- perception-distortion scatter: a distortion measure (PSNR) against a perceptual one
  (LPIPS when present, else NIQE), one point per method (Blau & Michaeli's plane);
- predicted-versus-opinion scatter for IQA, one panel per method, with PLCC/SRCC;
- severity curves for the monotonic check.

Every function returns {name: path} of what it wrote, and reports (never raises) when
matplotlib is missing, so a run without the extra still writes its tables.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .report import Column

PERCEPTUAL = ("lpips", "dists", "niqe", "piqe")   # first one present wins
DISTORTION = ("psnr", "ssim", "ms_ssim")


def guarded(plot_fn: Callable, *args) -> dict[str, Path]:
    """Run a plot function; a plotting failure is reported, never fatal: it comes after
    the (possibly hours-long, already cached) evaluation and its tables."""
    report = args[-1]
    try:
        return plot_fn(*args)
    except Exception as e:  # noqa: BLE001 - matplotlib raises many types
        report(f"plots failed ({type(e).__name__}: {e}); the tables and gallery are unaffected")
        return {}


def _pyplot(report: Callable[[str], None]):
    try:
        import matplotlib
        matplotlib.use("Agg")          # files only: never needs a display
        import matplotlib.pyplot as plt
    except ImportError:
        report("plots skipped: matplotlib is not installed (pip install 'uare[eval]')")
        return None
    return plt


def _save(fig, path: Path) -> Path:
    from ..imageio import atomic_write
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png"))
    return path


def _finite(v) -> bool:
    return v is not None and not (isinstance(v, float) and (math.isnan(v) or math.isinf(v)))


def restoration_plots(folder: Path, table: list[dict], columns: Sequence[Column],
                      report: Callable[[str], None]) -> dict[str, Path]:
    """Metric bars and the perception-distortion scatter from summary rows."""
    plt = _pyplot(report)
    if plt is None or not table or not columns:
        return {}
    files = {"plot_bars": metric_bars(plt, folder / "metrics.png", table, columns)}
    keys = {c.key: c for c in columns}
    # LPIPS/DISTS when present, else a no-reference measure (NIQE, ...), else any other.
    perceptual = next((k for k in PERCEPTUAL if k in keys), None) or \
        next((k for k in keys if k not in DISTORTION), None)
    if "psnr" in keys and perceptual:
        files["plot_pd"] = perception_distortion(plt, folder / "perception_distortion.png", table,
                                                 keys["psnr"], keys[perceptual])
    return files


def metric_bars(plt, path: Path, table: list[dict], columns: Sequence[Column]) -> Path:
    labels = [f"{r['method']}" if len({t['group'] for t in table}) == 1 else f"{r['group']}\n{r['method']}"
              for r in table]
    fig, axes = plt.subplots(1, len(columns), figsize=(3.2 * len(columns), 3.4), squeeze=False)
    colours = plt.cm.tab10(np.arange(len(table)) % 10)
    for ax, col in zip(axes[0], columns):
        vals = [r.get(col.key) if _finite(r.get(col.key)) else 0.0 for r in table]
        ax.bar(range(len(vals)), vals, color=colours)
        ax.set_title(col.header)
        ax.set_xticks(range(len(vals)), labels, rotation=35, ha="right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def perception_distortion(plt, path: Path, table: list[dict], dist: Column, perc: Column) -> Path:
    fig, ax = plt.subplots(figsize=(5, 4))
    for i, r in enumerate(table):
        if _finite(r.get(dist.key)) and _finite(r.get(perc.key)):
            ax.scatter(r[dist.key], r[perc.key], s=50, color=plt.cm.tab10(i % 10), label=r["method"])
            ax.annotate(r["method"], (r[dist.key], r[perc.key]), textcoords="offset points",
                        xytext=(5, 4), fontsize=8)
    ax.set_xlabel(f"{dist.header} (distortion)")
    ax.set_ylabel(f"{perc.header} (perception)")
    ax.set_title("perception-distortion (better: " + ("right" if not dist.lower_better else "left")
                 + ", " + ("down" if perc.lower_better else "up") + ")")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def opinion_scatter(folder: Path, records: list[dict], table: list[dict],
                    report: Callable[[str], None]) -> dict[str, Path]:
    """Predicted score against human opinion, one panel per method."""
    plt = _pyplot(report)
    if plt is None or not table:
        return {}
    fig, axes = plt.subplots(1, len(table), figsize=(3.6 * len(table), 3.4), squeeze=False)
    for ax, row in zip(axes[0], table):
        mine = [r for r in records if r["method"] == row["method"]]
        ax.scatter([r["mos"] for r in mine], [r["score"] for r in mine], s=8, alpha=0.6)
        ax.set_title(f"{row['method']}\nPLCC {row['plcc']:.3f}  SRCC {row['srcc']:.3f}", fontsize=9)
        ax.set_xlabel("opinion score (higher = better)")
        ax.set_ylabel("predicted score")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = _save(fig, folder / "predicted_vs_opinion.png")
    plt.close(fig)
    return {"plot_iqa": path}


def severity_curves(folder: Path, records: list[dict], types: Sequence[str],
                    report: Callable[[str], None]) -> dict[str, Path]:
    """Mean predicted quality (oriented: higher = better) against severity, per type."""
    plt = _pyplot(report)
    if plt is None or not records:
        return {}
    methods = list(dict.fromkeys(r["method"] for r in records))
    fig, axes = plt.subplots(1, len(methods), figsize=(4 * len(methods), 3.4), squeeze=False)
    for ax, m in zip(axes[0], methods):
        for typ in types:
            rows = [r for r in records if r["method"] == m and r["type"] == typ]
            levels = sorted({r["level"] for r in rows})
            means = [np.mean([r["quality"] for r in rows if r["level"] == lv]) for lv in levels]
            ax.plot(levels, means, marker="o", label=typ)
        ax.set_title(m)
        ax.set_xlabel("severity")
        ax.set_ylabel("quality (oriented)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = _save(fig, folder / "severity_curves.png")
    plt.close(fig)
    return {"plot_severity": path}
