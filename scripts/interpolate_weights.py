"""Interpolate two model folders of one lineage: out = A + alpha (B - A), tensor by tensor.

    python scripts/interpolate_weights.py weights/uare-tiny runs/s16/gen-export --alpha 0.5 -o runs/soup-0.5

Weight averaging along a fine-tuning path (Wortsman et al.'s WiSE-FT, "model soups"):
when B was trained on from A, the straight line between them often keeps what each does
best, at no training cost. The folders must share config.json, ae.safetensors and the
tokenizer (a continuation changes only model.safetensors); anything else is refused, as
is a tensor whose name, shape or dtype differs. The output folder is A's, with the
interpolated model.safetensors, every file written through `uare.imageio.atomic_write`.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from uare.imageio import atomic_write

SAME = ("config.json", "ae.safetensors", "tokenizer.json")


def _same_file(a: Path, b: Path) -> bool:
    if a.suffix == ".json":
        return json.loads(a.read_text()) == json.loads(b.read_text())
    return a.read_bytes() == b.read_bytes()


def interpolate(a: dict, b: dict, alpha: float) -> dict:
    """a + alpha (b - a) for every tensor, in float64 and back to the input dtype."""
    if a.keys() != b.keys():
        only = sorted(set(a) ^ set(b))[:5]
        raise ValueError(f"the two models hold different tensors, e.g. {only}")
    out = {}
    for k, ta in a.items():
        tb = b[k]
        if ta.shape != tb.shape or ta.dtype != tb.dtype:
            raise ValueError(f"{k}: {tuple(ta.shape)} {ta.dtype} vs {tuple(tb.shape)} {tb.dtype}")
        if not ta.is_floating_point():
            if not torch.equal(ta, tb):
                raise ValueError(f"{k}: integer tensors differ and cannot be interpolated")
            out[k] = ta.clone()
            continue
        out[k] = (ta.double() + alpha * (tb.double() - ta.double())).to(ta.dtype).contiguous()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", type=Path, help="model folder at alpha 0")
    ap.add_argument("b", type=Path, help="model folder at alpha 1 (trained on from a)")
    ap.add_argument("--alpha", type=float, required=True, help="0 gives a, 1 gives b")
    ap.add_argument("-o", "--out", type=Path, required=True)
    args = ap.parse_args(argv)
    if not 0.0 <= args.alpha <= 1.0:
        ap.error(f"--alpha {args.alpha}: expected a number in [0, 1]")
    for folder in (args.a, args.b):
        if not (folder / "model.safetensors").is_file():
            ap.error(f"{folder}: no model.safetensors")
    if args.out.resolve() in (args.a.resolve(), args.b.resolve()):
        ap.error("-o must be a new folder, not one of the inputs")
    for name in SAME:
        fa, fb = args.a / name, args.b / name
        if fa.is_file() != fb.is_file() or (fa.is_file() and not _same_file(fa, fb)):
            print(f"error: {name} differs between {args.a} and {args.b}: not one lineage", file=sys.stderr)
            return 2
    try:
        mixed = interpolate(load_file(str(args.a / "model.safetensors")),
                            load_file(str(args.b / "model.safetensors")), args.alpha)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    for f in args.a.iterdir():
        if f.is_file() and f.name != "model.safetensors":
            atomic_write(args.out / f.name, lambda tmp, src=f: shutil.copyfile(src, tmp))
    meta = {"interpolated": json.dumps({"a": str(args.a), "b": str(args.b), "alpha": args.alpha})}
    atomic_write(args.out / "model.safetensors", lambda tmp: save_file(mixed, str(tmp), metadata=meta))
    print(f"{args.out}: {args.a} + {args.alpha} x ({args.b} - {args.a}), {len(mixed)} tensors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
