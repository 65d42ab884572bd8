"""Runners for `uare eval iqa` (agreement with human opinion) and `uare eval monotonic`
(a label-free check: does the predicted quality fall as a degradation gets stronger?).

Scores are oriented so that higher means better before any correlation (lower-is-better
methods such as NIQE are negated, as pyiqa's benchmark does), so a good method has
positive PLCC/SRCC/KRCC and a monotonicity near 1.
"""
from __future__ import annotations

import csv
import math
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
from scipy import stats

from ..imageio import ImageError, list_images, load_image, save_image, write_text
from .cache import ResultCache, digest
from .methods import Method
from .report import Column, mean, per_image_csv, write_report
from .tasks import (RUN_ERRORS, EvalConfig, EvalResult, _default_degrade, _info, _progress, build_methods,
                    dataset_name)

SCORE_FORMATS = ("csv", "koniq10k", "kadid10k", "spaq", "livec", "csiq", "pipal", "agiqa3k")
MONOTONIC_TYPES = ("blur", "noise", "jpeg", "lowlight", "haze")
MONOTONIC_LEVELS = (0.2, 0.4, 0.6, 0.8, 1.0)


def correlations(pred: Sequence[float], mos: Sequence[float]) -> dict[str, float]:
    """PLCC (no logistic fit, as pyiqa's default), SRCC, KRCC; NaN with < 3 valid pairs."""
    p, m = np.asarray(pred, float), np.asarray(mos, float)
    ok = np.isfinite(p) & np.isfinite(m)
    p, m = p[ok], m[ok]
    if len(p) < 3 or np.ptp(p) == 0 or np.ptp(m) == 0:
        return {"plcc": float("nan"), "srcc": float("nan"), "krcc": float("nan"), "n": int(len(p))}
    return {"plcc": float(stats.pearsonr(p, m)[0]), "srcc": float(stats.spearmanr(p, m)[0]),
            "krcc": float(stats.kendalltau(p, m)[0]), "n": int(len(p))}


def load_generic_scores(path: Path, root: Path) -> list[tuple[Path, float]]:
    """A plain CSV with columns `image` (relative to root) and `mos` (higher = better)."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or "image" not in rows[0] or "mos" not in rows[0]:
        raise ValueError(f"{path}: expected a CSV with columns image,mos")
    out = []
    for line, r in enumerate(rows, start=2):
        try:
            out.append((root / r["image"], float(r["mos"])))
        except ValueError:
            raise ValueError(f"{path}: line {line}: mos {r['mos']!r} is not a number") from None
    return out


def load_opinions(scores: Path, root: Path, fmt: str, split: Optional[str]) -> list[tuple[Path, float]]:
    """(image path, opinion score in 'higher is better' orientation) per rated image."""
    if fmt == "csv":
        return load_generic_scores(scores, root)
    from ..data.scores import load_scores
    rows = load_scores(fmt, scores, root)
    if split:
        rows = [r for r in rows if r.split == split]
    return [(r.image, r.mos) for r in rows]


def _score_items(items, methods: Sequence[Method], out: Path, desc: str):
    """items: (key, image path, extra dict). Yields cached/new records per (method, item)."""
    cache = ResultCache(out / "cache.jsonl")
    records, failures = [], []
    pairs = [(it, m) for it in items for m in methods]
    for (key, path, extra), method in _progress(pairs, desc, total=len(pairs)):
        dg = digest([path], {"task": "iqa"})
        rec = cache.get(method.fingerprint, key, dg)
        if rec is None:
            try:
                image = load_image(path)
                t0 = time.perf_counter()
                score = method.score(image)
                rec = cache.put({"method": method.label, "fp": method.fingerprint, "key": key,
                                 "input": dg, "metrics": {"score": score}, "output": None,
                                 "seconds": time.perf_counter() - t0, "text": method.last_text})
            except RUN_ERRORS as e:
                failures.append(f"{method.label} on {path}: {e}")
                _info(f"failed: {method.label} on {path}: {e}")
                continue
        oriented = -rec["metrics"]["score"] if method.lower_better else rec["metrics"]["score"]
        records.append({"key": key, "method": method.label, "score": rec["metrics"]["score"],
                        "quality": oriented, "seconds": rec["seconds"], "path": str(path), **extra})
    return records, failures


def evaluate_iqa(images_root, scores_file, fmt: str, cfg: EvalConfig,
                 split: Optional[str] = None) -> EvalResult:
    """`uare eval iqa`: PLCC/SRCC/KRCC of each method's scores against human opinion."""
    root, scores_file = Path(images_root), Path(scores_file)
    if fmt not in SCORE_FORMATS:
        raise ValueError(f"unknown score format {fmt!r}; choose from {', '.join(SCORE_FORMATS)}")
    rated = load_opinions(scores_file, root, fmt, split)
    present = [(p, s) for p, s in rated if p.exists()]
    result = EvalResult()
    if len(present) < len(rated):
        result.skipped.append(f"{len(rated) - len(present)} of {len(rated)} rated images are not "
                              f"under {root}, e.g. {next(p for p, _ in rated if not p.exists())}")
        _info(result.skipped[-1])
    present = present[:cfg.limit]
    if not present:
        raise ImageError(f"{root}: none of the images rated in {scores_file} is there")
    methods, skipped = build_methods(cfg.methods, "iqa")
    result.skipped += skipped
    items = [(str(_rel(p, root)), p, {"mos": s}) for p, s in present]
    result.records, result.failures = _score_items(items, methods, cfg.out, "eval iqa")
    group = cfg.name or scores_file.stem
    for m in methods:
        mine = [r for r in result.records if r["method"] == m.label]
        row = correlations([r["quality"] for r in mine], [r["mos"] for r in mine])
        result.table.append({"group": group, "method": m.label, **row})
    result.columns = [Column("plcc", "PLCC"), Column("srcc", "SRCC"), Column("krcc", "KRCC"),
                      Column("n", "images", None, 0)]
    notes = ["scores of lower-is-better methods are negated first; PLCC without a logistic fit"]
    result.files.update(write_report(cfg.out, "iqa", f"IQA on {group}", result.table, result.columns,
                                     notes + [f"skipped {s}" for s in result.skipped]))
    write_text(cfg.out / "iqa_per_image.csv", per_image_csv(
        [{**r, "group": group} for r in result.records], ["score", "mos", "seconds"]))
    if cfg.plots:
        from .plots import guarded, opinion_scatter
        result.files.update(guarded(opinion_scatter, cfg.out / "plots", result.records, result.table, _info))
    return result


def _rel(path: Path, root: Path) -> Path:
    try:
        return path.relative_to(root)
    except ValueError:
        return Path(path.name)


def monotonic_inputs(hq: Sequence[Path], types: Sequence[str], levels: Sequence[float],
                     cfg: EvalConfig, degrade: Optional[Callable]) -> tuple[list, list[str]]:
    """(key, path, extra) per (image, type, level), level 0 being the clean image itself.
    The same seed for every level of an image, so only the strength changes."""
    items, failures = [], []
    for i, path in enumerate(hq):
        for typ in types:
            # One key for the clean image: scored once, its cached score reused for every type.
            items.append((f"{path.stem}|clean", path, {"image": path.stem, "type": typ, "level": 0.0}))
            for level in levels:
                lq = cfg.out / "inputs" / "monotonic" / typ / f"{level:g}" / f"{path.stem}.png"
                try:
                    if not lq.exists():
                        degrade = degrade or _default_degrade()
                        img, _ = degrade(load_image(path), f"single:{typ}:{level:g}", seed=cfg.seed + i)
                        save_image(img, lq, protect=[path])
                except RUN_ERRORS as e:
                    failures.append(f"{path}: cannot degrade with {typ} at {level:g} ({e})")
                    continue
                items.append((f"{path.stem}|{typ}|{level:g}", lq,
                              {"image": path.stem, "type": typ, "level": float(level)}))
    return items, failures


PER_IMAGE_SRCC = 0.9   # issue 7's target: every image's SRCC at least this


def monotonicity(records: list[dict], method: str, typ: str) -> tuple[float, float, float, float]:
    """(mean over images of SRCC(-severity, quality), share of images whose quality falls
    strictly at every step, the lowest image's SRCC, share of images at PER_IMAGE_SRCC or
    more: a per-image target reads the last two)."""
    mine = [r for r in records if r["method"] == method and r["type"] == typ]
    rhos, strict = [], []
    for image in dict.fromkeys(r["image"] for r in mine):
        rows = sorted((r for r in mine if r["image"] == image), key=lambda r: r["level"])
        if len(rows) < 3:
            continue
        q = np.array([r["quality"] for r in rows])
        # A constant score tells nothing about severity: count it as 0, not NaN.
        rho = 0.0 if np.ptp(q) == 0 else stats.spearmanr(-np.array([r["level"] for r in rows]), q)[0]
        # rounded: scipy gives one swap in 5 levels (exactly 0.9) as 0.8999..., short of a 0.9 target
        rhos.append(0.0 if math.isnan(rho) else round(float(rho), 12))
        strict.append(bool(np.all(np.diff(q) < 0)))
    if not rhos:
        return float("nan"), float("nan"), float("nan"), float("nan")
    return (float(np.mean(rhos)), float(np.mean(strict)), float(np.min(rhos)),
            float(np.mean([r >= PER_IMAGE_SRCC for r in rhos])))


def evaluate_monotonic(hq_dir, cfg: EvalConfig, types: Sequence[str] = MONOTONIC_TYPES,
                       levels: Sequence[float] = MONOTONIC_LEVELS,
                       degrade: Optional[Callable] = None) -> EvalResult:
    """`uare eval monotonic`: severity sweeps per degradation type, scored by IQA methods."""
    hq_dir = Path(hq_dir)
    hq = list_images(hq_dir)[:cfg.limit]
    if not hq:
        raise ImageError(f"{hq_dir}: no images")
    methods, skipped = build_methods(cfg.methods, "iqa")
    items, failures = monotonic_inputs(hq, types, levels, cfg, degrade)
    result = EvalResult(skipped=skipped, failures=failures)
    records, fails = _score_items(items, methods, cfg.out, "eval monotonic")
    result.records, result.failures = records, result.failures + fails
    group = cfg.name or dataset_name(hq_dir)
    for m in methods:
        row = {"group": group, "method": m.label}
        for typ in types:
            row[typ], row[f"{typ}_strict"], row[f"{typ}_worst"], row[f"{typ}_at"] = monotonicity(records, m.label, typ)
        row["mean"] = mean([row[t] for t in types])
        result.table.append(row)
    result.columns = [Column(t, t) for t in types] + [Column("mean", "mean")] + \
        [Column(f"{t}_worst", f"{t} worst") for t in types] + \
        [Column(f"{t}_at", f"{t} >= {PER_IMAGE_SRCC:g}") for t in types] + \
        [Column(f"{t}_strict", f"{t} strict") for t in types]
    notes = [f"SRCC between -severity (0 = clean, {', '.join(f'{v:g}' for v in levels)}) and the "
             "predicted quality, mean over images; 'worst': the lowest image's SRCC; "
             f"'>= {PER_IMAGE_SRCC:g}': share of images at that SRCC or more; 'strict': "
             f"share of images whose quality falls at every step; {len(hq)} images"]
    result.files.update(write_report(cfg.out, "monotonic", f"IQA monotonicity on {group}", result.table,
                                     result.columns, notes + [f"skipped {s}" for s in result.skipped]))
    write_text(cfg.out / "monotonic_per_image.csv", per_image_csv(
        [{**r, "group": group} for r in records], ["level", "score", "quality"], extra=("type",)))
    if cfg.plots:
        from .plots import guarded, severity_curves
        result.files.update(guarded(severity_curves, cfg.out / "plots", records, types, _info))
    return result
