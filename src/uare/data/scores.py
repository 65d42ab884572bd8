"""Loaders of published IQA score files, mapped to [1, 5] (higher = better).

Formats (see ../shared/data/iqa_scores/README.md):
- icbcbicc/IQA-Dataset CSVs: `dis_img_path,dis_type,[ref_img_path,]score`, paths relative
  to a root that holds the `<Dataset>/` folder;
- KonIQ-10k official `koniq10k_distributions_sets.csv`: rating distribution c1..c5, MOS on
  0-100, and the official training/validation/test split;
- AGIQA-3K `data.csv`: `name,...,mos_quality,...`.

Mappings to [1, 5], chosen from each database's published scale:
- KonIQ-10k, KADID-10k: MOS already on 1-5 (the official KonIQ file: the mean of the c1..c5
  distribution, which is that same 1-5 MOS);
- SPAQ, LIVE Challenge: MOS on 0-100 -> 1 + 4 s / 100;
- AGIQA-3K: quality MOS on 0-5 -> 1 + 4 s / 5;
- CSIQ: DMOS on 0-1, lower is better -> 5 - 4 d;
- PIPAL: Elo scores without a fixed range -> min-max over the file to [1, 5].
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

PathLike = Union[str, os.PathLike]


class ScoreFileError(ValueError):
    """A score file that cannot be read; the message names the file and the reason."""


@dataclass(frozen=True)
class ScoredImage:
    """One rated image: `mos` in [1, 5], `raw` the published value."""
    dataset: str
    image: Path
    mos: float
    raw: float
    reference: Optional[Path] = None
    distortion: str = ""
    split: str = ""


def _linear(lo: float, hi: float, invert: bool = False) -> Callable[[float], float]:
    def f(s: float) -> float:
        u = (s - lo) / (hi - lo)
        return 1.0 + 4.0 * ((1.0 - u) if invert else u)
    return f


# name -> (icbcbicc file stem, raw -> [1, 5] mapping or None for min-max over the file)
DATASETS: dict[str, tuple[str, Optional[Callable[[float], float]]]] = {
    "koniq10k": ("KonIQ-10k", lambda s: s),
    "kadid10k": ("KADID-10k", lambda s: s),
    "spaq": ("SPAQ", _linear(0, 100)),
    "livec": ("LIVE_Challenge", _linear(0, 100)),
    "csiq": ("CSIQ", _linear(0, 1, invert=True)),
    "pipal": ("PIPAL", None),
    "agiqa3k": ("AGIQA-3k", _linear(0, 5)),
}


def _resolve(root: Path, rel: str) -> Path:
    """`rel` is written from the parent of the dataset folder; accept a root that is the
    dataset folder itself too."""
    p = root / rel
    head, _, rest = rel.partition("/")
    if not p.exists() and rest and (root.name == head or (root / rest).exists()):
        return root / rest
    return p


def _rows(path: Path) -> list[dict]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ScoreFileError(f"{path}: cannot read score file ({e})") from e
    if not rows:
        raise ScoreFileError(f"{path}: no rows")
    return rows


def _float(row: dict, key: str, path: Path, line: int) -> float:
    try:
        return float(row[key])
    except (KeyError, TypeError, ValueError) as e:
        raise ScoreFileError(f"{path}: line {line}: no numeric '{key}' column ({e})") from e


def _clip(x: float) -> float:
    return min(5.0, max(1.0, x))


def load_scores(dataset: str, score_file: PathLike, image_root: PathLike,
                require_images: bool = False) -> list[ScoredImage]:
    """Rated images of one database. `dataset` is a key of DATASETS; `score_file` is its
    published file (formats above); images are resolved under `image_root`. With
    `require_images`, a missing image raises; otherwise it is kept (it is checked when
    read)."""
    if dataset not in DATASETS:
        raise ScoreFileError(f"unknown dataset {dataset!r}; choose from {sorted(DATASETS)}")
    path, root = Path(score_file), Path(image_root)
    rows = _rows(path)
    if dataset == "agiqa3k":
        out = _agiqa(rows, path, root)
    elif dataset == "koniq10k" and "c1" in rows[0]:
        out = _koniq_official(rows, path, root)
    else:
        out = _icbcbicc(dataset, rows, path, root)
    if require_images:
        missing = [s.image for s in out if not s.image.exists()]
        if missing:
            raise ScoreFileError(f"{path}: {len(missing)} images missing under {root}, "
                                 f"e.g. {missing[0]}")
    return out


def _icbcbicc(dataset: str, rows: list[dict], path: Path, root: Path) -> list[ScoredImage]:
    if "dis_img_path" not in rows[0] or "score" not in rows[0]:
        raise ScoreFileError(f"{path}: expected columns dis_img_path,...,score")
    raws = [_float(r, "score", path, i + 2) for i, r in enumerate(rows)]
    fmap = DATASETS[dataset][1] or _linear(min(raws), max(raws))
    return [ScoredImage(dataset, _resolve(root, r["dis_img_path"]), _clip(fmap(s)), s,
                        _resolve(root, r["ref_img_path"]) if r.get("ref_img_path") else None,
                        r.get("dis_type", ""))
            for r, s in zip(rows, raws)]


def _koniq_official(rows: list[dict], path: Path, root: Path) -> list[ScoredImage]:
    out = []
    for i, r in enumerate(rows):
        mos = sum(k * _float(r, f"c{k}", path, i + 2) for k in range(1, 6))
        raw = _float(r, "MOS", path, i + 2)
        img = _resolve(root, f"KonIQ-10k/1024x768/{r['image_name']}")
        out.append(ScoredImage("koniq10k", img, _clip(mos), raw, split=r.get("set", "")))
    return out


def _agiqa(rows: list[dict], path: Path, root: Path) -> list[ScoredImage]:
    fmap = DATASETS["agiqa3k"][1]
    out = []
    for i, r in enumerate(rows):
        raw = _float(r, "mos_quality", path, i + 2)
        out.append(ScoredImage("agiqa3k", _resolve(root, f"AGIQA-3k/{r['name']}"),
                               _clip(fmap(raw)), raw, distortion=r.get("style", "")))
    return out
