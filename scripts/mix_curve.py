"""How much of a restorer's change is worth keeping? Reads a `uare eval restore` run.

For each table group and method: mean PSNR-Y of input + a (output - input) for shares a in
0, 0.05, ..., 1 (the `mix` inference setting, applied after the fact to the saved
outputs), the best share, and `mix: auto` (uare.fidelity.auto_mix, meant for noise).
Input and clean images are found as scripts/change_alignment.py finds them. Run it on
outputs made at mix 1 (the model's whole change).

    python scripts/mix_curve.py runs/s13/noise-sweep-tune-hq --hq runs/tune-hq
"""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from change_alignment import triples  # noqa: E402

from uare.fidelity import auto_mix  # noqa: E402
from uare.metrics.psnr_ssim import psnr  # noqa: E402

SHARES = np.round(np.arange(0, 1.0001, 0.05), 2)


def curves(run: Path, hq: Path, crop_border: int = 0) -> list[dict]:
    per: dict = defaultdict(list)
    for group, method, x, y, c in triples(run, hq):
        clean = c.astype(np.uint8)

        def score(a: float) -> float:
            return float(psnr(np.clip(np.round(x + a * (y - x)), 0, 255).astype(np.uint8), clean,
                              crop_border=crop_border))
        tx, ty = (torch.from_numpy(v / 255.0).permute(2, 0, 1) for v in (x, y))
        a = auto_mix(ty, tx)
        per[(group, method)].append([score(s) for s in SHARES] + [score(a), a])
    out = []
    for (group, method), rows in per.items():
        m = np.mean(rows, 0)
        grid = m[:len(SHARES)]
        out.append({"group": group, "method": method, "images": len(rows), "input": grid[0], "whole": grid[-1],
                    "best": grid.max(), "best_share": float(SHARES[grid.argmax()]), "auto": m[-2],
                    "auto_share": m[-1], "curve": grid})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path, help="folder of a `uare eval restore` run")
    ap.add_argument("--hq", type=Path, required=True, help="the clean images the run degraded")
    ap.add_argument("--crop-border", type=int, default=0, help="pixels cut from each side (4 for x4 sr)")
    args = ap.parse_args(argv)
    print("| group | method | images | input | whole (1) | best share | auto (mean share) |")
    print("|---|---|---|---|---|---|---|")
    for r in curves(args.run, args.hq, args.crop_border):
        print(f"| {r['group']} | {r['method']} | {r['images']} | {r['input']:.2f} | {r['whole']:.2f} | "
              f"{r['best']:.2f} ({r['best_share']:.2f}) | {r['auto']:.2f} ({r['auto_share']:.2f}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
