"""Does a restorer move its input towards the clean image? Reads a `uare eval restore` run.

PSNR only says whether the output ended up closer; for a small model that loses to its
input this tells the two failures apart: a change pointing the right way but too noisy or
too large (cosine > 0), or a change unrelated to the degradation (cosine ~ 0, nothing was
learned for that type). Per table group and method, over all its images (RGB, 0-255):

  cosine    <change, residual> / (|change| |residual|), change = output - input and
            residual = clean - input
  energy    |change|^2 / |residual|^2 (how much the method changes, relative to the defect)

The input is the output of the `bicubic` method (the degraded image itself for
same-size presets); the clean image is the file of the same stem in --hq.

    python scripts/change_alignment.py runs/eval-x --hq ../shared/data/dev/set5_x4/HR
"""
from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from uare.imageio import load_image


def load(path: Path) -> np.ndarray:
    return np.asarray(load_image(path), dtype=np.float64)


def triples(run: Path, hq: Path):
    """(group, method, input, output, clean) for every non-bicubic result of an eval run,
    as float64 RGB arrays (0-255)."""
    table = run / "restore_per_image.csv"
    if not table.exists():
        raise SystemExit(f"{table}: not found (a `uare eval restore` run folder is needed)")
    with open(table, newline="") as f:
        rows = list(csv.DictReader(f))
    inputs = {(r["dataset"], r["image"]): r["output"] for r in rows if r["method"] == "bicubic"}
    if not inputs:
        raise SystemExit(f"{table}: no bicubic rows; rerun the eval with bicubic among --methods")
    clean = {p.stem: p for p in hq.iterdir() if p.is_file()}
    for r in rows:
        key = (r["dataset"], r["image"])
        if r["method"] == "bicubic" or key not in inputs:
            continue
        stem = r["image"].rsplit("/", 1)[-1]
        if stem not in clean:
            raise SystemExit(f"{r['image']}: no clean image named {stem}.* in {hq}")
        yield r["dataset"], r["method"], load(run / inputs[key]), load(run / r["output"]), load(clean[stem])


def alignment(run: Path, hq: Path) -> list[dict]:
    sums: dict = defaultdict(lambda: np.zeros(3))
    for group, method, x, y, c in triples(run, hq):
        change, residual = y - x, c - x
        sums[(group, method)] += [(change * residual).sum(), (change ** 2).sum(), (residual ** 2).sum()]
    out = []
    for (group, method), (cr, cc, rr) in sums.items():
        out.append({"group": group, "method": method,
                    "cosine": cr / np.sqrt(cc * rr) if cc and rr else float("nan"),
                    "energy": cc / rr if rr else float("nan")})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path, help="folder of a `uare eval restore` run")
    ap.add_argument("--hq", type=Path, required=True, help="the clean images the run degraded")
    args = ap.parse_args(argv)
    print("| group | method | cosine | energy |\n|---|---|---|---|")
    for row in alignment(args.run, args.hq):
        print(f"| {row['group']} | {row['method']} | {row['cosine']:.2f} | {row['energy']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
