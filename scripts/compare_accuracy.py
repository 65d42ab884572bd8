"""How often does `compare` pick the better image? Pairwise accuracy of its methods.

For every photo in the folders and every degradation type, two pairs of which one image is
known to be better: (the photo, the type at --strong) and (the type at --mild, at
--strong), each compared in both orders (A/B and B/A), by every method asked for:
`answer` (the model's written verdict, without and, with --ref, with the clean photo as the
reference) and `scores` (each image assessed alone). Prints, per method and type, the share
of comparisons won by the better image (ties count half) and the mean probability given to
the better one; 0.5 is what a coin, or a model that cannot tell its images apart, scores.

    python scripts/compare_accuracy.py runs/tune-hq runs/tune-wide --ref
"""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

from PIL import Image

TYPES = ("noise", "blur", "jpeg")


def pairs(photos: list[Path], types, mild: float, strong: float, seed: int):
    """(type, clean, better, worse) for every photo and type."""
    from uare.degradations import degrade

    for p in photos:
        clean = Image.open(p).convert("RGB")
        for t in types:
            lo = degrade(clean, f"single:{t}:{mild}", seed=seed)[0]
            hi = degrade(clean, f"single:{t}:{strong}", seed=seed)[0]
            yield t, clean, clean, hi
            yield t, clean, lo, hi


def measure(model, photos: list[Path], methods: list[str], use_ref: bool, types=TYPES,
            mild: float = 0.25, strong: float = 0.75, seed: int = 0, progress=None) -> dict:
    """{(method label, type): [share won by the better image, mean P(better), comparisons]}."""
    got = defaultdict(list)
    labels = [(m, False) for m in methods] + ([("answer", True)] if use_ref and "answer" in methods else [])
    for t, clean, good, bad in pairs(photos, types, mild, strong, seed):
        for method, with_ref in labels:
            label = f"{method} (ref)" if with_ref else method
            for first_good in (True, False):
                a, b = (good, bad) if first_good else (bad, good)
                c = model.compare(a, b, ref=clean if with_ref else None, method=method)
                p_good = c.probability if (c.preferred == "A") == first_good else 1.0 - c.probability
                won = 0.5 if abs(p_good - 0.5) < 1e-3 else float(p_good > 0.5)   # a tie within reading noise
                got[(label, t)].append((won, p_good))
        if progress:
            progress()
    return {k: [sum(w for w, _ in v) / len(v), sum(p for _, p in v) / len(v), len(v)] for k, v in got.items()}


def table(result: dict, types=TYPES) -> str:
    labels = list(dict.fromkeys(k[0] for k in result))
    lines = ["| method | " + " | ".join(types) + " | all |", "|---|" + "---|" * (len(types) + 1)]
    for lab in labels:
        cells, n_all, w_all, p_all = [], 0, 0.0, 0.0
        for t in types:
            won, p, n = result[(lab, t)]
            cells.append(f"{won:.2f} (P {p:.2f})")
            n_all, w_all, p_all = n_all + n, w_all + won * n, p_all + p * n
        lines.append(f"| {lab} | " + " | ".join(cells) + f" | {w_all / n_all:.2f} (P {p_all / n_all:.2f}) |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folders", nargs="+", type=Path, help="folders of clean photos (png)")
    ap.add_argument("--model", default=None, help="model folder (default: the bundled one)")
    ap.add_argument("--methods", default="answer,scores")
    ap.add_argument("--ref", action="store_true", help="also the written verdict given the clean photo as reference")
    ap.add_argument("--mild", type=float, default=0.25)
    ap.add_argument("--strong", type=float, default=0.75)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    photos = sorted(p for f in args.folders for p in f.glob("*.png"))
    if not photos:
        print(f"no png photos in {', '.join(map(str, args.folders))}", file=sys.stderr)
        return 2
    from tqdm import tqdm

    from uare import UARE

    model = UARE.from_pretrained(args.model)
    bar = tqdm(total=len(photos) * len(TYPES) * 2, desc="pairs", file=sys.stderr)
    result = measure(model, photos, [m.strip() for m in args.methods.split(",")], args.ref,
                     mild=args.mild, strong=args.strong, seed=args.seed, progress=bar.update)
    bar.close()
    print(f"{len(photos)} photos, pairs (clean, {args.strong}) and ({args.mild}, {args.strong}), both orders; "
          "share won by the better image (mean P given to it)")
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
