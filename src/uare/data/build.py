"""`uare data build`: clean images in, JSONL manifests out.

A manifest line names a clean image, a sample kind, a degradation preset and a seed; the
degraded image is made on the fly from (image, preset, seed) by `uare.degradations.degrade`,
so a dataset is a few kilobytes and every sample can be rebuilt exactly.

Kinds (the rows of Table A.1's sampling ratios): `single`, `multi`, `high_order`,
`interleaved` (analyse-then-restore, any preset), `iqa` (synthetic scoring, description and
comparison), plus `iqa_real` lines from published score files.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional

from PIL import Image

from ..imageio import atomic_write, write_json
from .scores import load_scores

SINGLE_TYPES = ("blur", "noise", "jpeg", "haze", "rain", "raindrop", "lowlight")
# FoundIR's mixture categories, each written in image-formation order (scene, optics,
# sensor, codec) so the degradations compose as a camera would produce them.
MULTI_PRESETS = (
    "multi:blur+noise", "multi:blur+jpeg", "multi:blur+noise+jpeg", "multi:noise+jpeg",
    "multi:lowlight+haze", "multi:rain+haze", "multi:lowlight+rain", "multi:lowlight+blur",
    "multi:lowlight+noise", "multi:lowlight+jpeg", "multi:lowlight+blur+noise",
    "multi:lowlight+blur+jpeg", "multi:lowlight+noise+jpeg",
)
HIGH_ORDER_PRESETS = ("realesrgan",)
IQA_TASKS = ("score", "describe", "compare")
KINDS = ("single", "multi", "high_order", "interleaved", "iqa")
MIN_SIDE = 32


@dataclass
class BuildConfig:
    """What `build` writes: `per_image` lines per kind and clean image."""
    kinds: tuple[str, ...] = KINDS
    per_image: int = 4
    seed: int = 0
    single_types: tuple[str, ...] = SINGLE_TYPES
    multi_presets: tuple[str, ...] = MULTI_PRESETS
    clean_fraction: float = 0.1  # of IQA lines: an undegraded image teaches "excellent"
    score_files: list[tuple[str, str, str]] = field(default_factory=list)  # (dataset, file, root)

    def __post_init__(self):
        bad = [k for k in self.kinds if k not in KINDS]
        if bad:
            raise ValueError(f"unknown kinds {bad}; choose from {list(KINDS)}")
        if self.per_image < 1:
            raise ValueError(f"per_image must be >= 1, got {self.per_image}")


def _presets(kind: str, cfg: BuildConfig) -> tuple[str, ...]:
    singles = tuple(f"single:{t}" for t in cfg.single_types)
    return {"single": singles, "multi": cfg.multi_presets, "high_order": HIGH_ORDER_PRESETS,
            "interleaved": singles + cfg.multi_presets + HIGH_ORDER_PRESETS,
            "iqa": singles + cfg.multi_presets}[kind]


def check_image(path: Path) -> tuple[int, int]:
    """Open the header and refuse what cannot be trained on; returns (W, H)."""
    try:
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:
            size = im.size
    except (OSError, SyntaxError) as e:
        raise ValueError(f"{path}: not a readable image ({e})") from e
    if min(size) < MIN_SIDE:
        raise ValueError(f"{path}: {size[0]}x{size[1]} is smaller than {MIN_SIDE} pixels a side")
    return size


def lines_for_image(path: Path, size: tuple[int, int], index: int, cfg: BuildConfig) -> dict:
    """Manifest lines of one clean image, per kind; seeds depend only on (seed, path
    position, kind, k), so adding kinds never changes another kind's samples."""
    out: dict[str, list[dict]] = {}
    for kind in cfg.kinds:
        rng = random.Random(f"{cfg.seed}:{index}:{kind}")
        out[kind] = [{"image": str(path), "size": list(size), "kind": kind,
                      **draw_degradation(kind, rng, cfg)} for _ in range(cfg.per_image)]
    return out


def draw_degradation(kind: str, rng: random.Random, cfg: Optional[BuildConfig] = None,
                     iqa_tasks: tuple[str, ...] = IQA_TASKS) -> dict:
    """The degradation fields of one manifest line of `kind` (preset, seed; for iqa also
    task, one of `iqa_tasks`, and preset_b for comparisons), drawn from rng. Also used by
    the sample stream to redraw a line's degradation for every sample (`DataConfig.online`)."""
    cfg = cfg or BuildConfig()
    presets = _presets(kind, cfg)
    row = {"preset": rng.choice(presets), "seed": rng.getrandbits(31)}
    if kind == "iqa":
        row["task"] = rng.choice(iqa_tasks)
        if row["task"] != "compare" and rng.random() < cfg.clean_fraction:
            row["preset"] = None
        if row["task"] == "compare":
            row["preset_b"] = rng.choice(presets)
    return row


def _write_jsonl(path: Path, rows: Iterable[dict]) -> int:
    lines = [json.dumps(r) + "\n" for r in rows]

    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(lines)
    atomic_write(path, write)
    return len(lines)


def real_iqa_lines(cfg: BuildConfig) -> list[dict]:
    rows = []
    for name, file, root in cfg.score_files:
        for s in load_scores(name, file, root):
            rows.append({"image": str(s.image), "kind": "iqa_real", "task": "score",
                         "dataset": name, "mos": round(s.mos, 4), "seed": len(rows)})
    return rows


def build(images: list[Path], out_dir: Path, cfg: BuildConfig,
          on_error: Optional[Callable[[Path, Exception], None]] = None,
          wrap: Callable = lambda it, **kw: it) -> dict:
    """Write `manifest-<kind>.jsonl` and `build.json` (counts, failures) into `out_dir`.
    A bad image is reported through `on_error` and skipped; the rest go on."""
    out_dir.mkdir(parents=True, exist_ok=True)
    per_kind: dict[str, list[dict]] = {k: [] for k in cfg.kinds}
    failures = []
    for i, path in enumerate(wrap(images, desc="checking images", total=len(images))):
        try:
            size = check_image(path)
        except ValueError as e:
            failures.append(str(e))
            if on_error:
                on_error(path, e)
            continue
        for kind, rows in lines_for_image(path, size, i, cfg).items():
            per_kind[kind].extend(rows)
    counts = {k: _write_jsonl(out_dir / f"manifest-{k}.jsonl", rows) for k, rows in per_kind.items()}
    if cfg.score_files:
        counts["iqa_real"] = _write_jsonl(out_dir / "manifest-iqa_real.jsonl", real_iqa_lines(cfg))
    summary = {"images": len(images) - len(failures), "failed": failures, "counts": counts,
               "config": {"kinds": list(cfg.kinds), "per_image": cfg.per_image, "seed": cfg.seed}}
    write_json(out_dir / "build.json", summary)
    return summary
