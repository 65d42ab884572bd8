"""How far the outputs of a `uare eval restore` run sit from their clean images in tone.

    python scripts/tone_bias.py runs/s17/tune-soup --hq runs/s17/tune17 [--preset lowlight+haze]

PSNR says an output is off, not which way. For the tasks that change brightness (low
light, haze, rain streaks and their mixes) the sign is the story: a dehazer that leaves
airlight behind comes out brighter and greyer than the clean photo, a low-light model that
lifts too far likewise, and the two stack in a lowlight+haze mix. Per preset and method,
over the run's images (`restore_per_image.csv`; clean images looked up in --hq by name):
the mean of (output - clean) in luma (full-range BT.601 Y, 0-255), its mean absolute
value, and the same for saturation (max - min over RGB) and contrast (the std of Y).
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from uare.imageio import ImageError, load_image  # noqa: E402
from uare.metrics.color import rgb_to_y  # noqa: E402


def tone(pixels: np.ndarray) -> tuple[float, float, float]:
    """(mean Y, mean saturation, std of Y) of an HxWx3 uint8 image, 0-255 scale."""
    x = pixels.astype(np.float64)
    y = rgb_to_y(x, space="yiq")
    return float(y.mean()), float((x.max(-1) - x.min(-1)).mean()), float(y.std())


def _clean_of(hq: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(hq.iterdir()) if p.is_file()}


def bias(run: Path, hq: Path, preset: str = "") -> list[dict]:
    """One dict per (preset, method): n, dY, |dY|, dSat, dContrast (output - clean)."""
    table = run / "restore_per_image.csv"
    if not table.exists():
        raise FileNotFoundError(f"{run}: no restore_per_image.csv (a `uare eval restore` run folder)")
    clean, cache = _clean_of(hq), {}
    groups: dict[tuple[str, str], list] = {}
    with open(table, newline="") as f:
        for r in csv.DictReader(f):
            name, _, stem = r["image"].partition("/")
            if preset and name.split(":", 1)[-1] != preset and name != preset:
                continue
            if stem not in clean:
                raise FileNotFoundError(f"{hq}: no clean image named {stem!r} (from {table})")
            if stem not in cache:
                cache[stem] = tone(np.asarray(load_image(clean[stem])))
            out = tone(np.asarray(load_image(run / r["output"])))
            groups.setdefault((name, r["method"]), []).append(np.subtract(out, cache[stem]))
    rows = []
    for (name, method), d in groups.items():
        d = np.array(d)
        rows.append({"preset": name, "method": method, "n": len(d), "dY": d[:, 0].mean(),
                     "abs_dY": np.abs(d[:, 0]).mean(), "dSat": d[:, 1].mean(), "dContrast": d[:, 2].mean()})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a `uare eval restore` output folder")
    ap.add_argument("--hq", type=Path, required=True, help="the clean images the run was made from")
    ap.add_argument("--preset", default="", help="only this preset, e.g. lowlight+haze or single:haze")
    args = ap.parse_args(argv)
    try:
        rows = bias(args.run, args.hq, args.preset)
    except (FileNotFoundError, ImageError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not rows:
        print(f"error: {args.run}: no images of preset {args.preset!r}", file=sys.stderr)
        return 2
    print("| preset | method | images | Y out - clean | abs | saturation | contrast |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['preset']} | {r['method']} | {r['n']} | {r['dY']:+.1f} | {r['abs_dY']:.1f} | "
              f"{r['dSat']:+.1f} | {r['dContrast']:+.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
