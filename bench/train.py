"""Training throughput of the tiny stage-1 recipe: packing to a token budget vs one sample
per forward (the baseline), measured in this process. Prints ratios (higher = faster).

    flock /tmp/uare-cpu.lock .venv/bin/python bench/train.py [--steps 3]

Uses ../shared/data/train when present, else scikit-image's bundled photos.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "train"


def clean_images(tmp: Path) -> list[Path]:
    if SHARED.is_dir():
        return sorted(SHARED.rglob("*.png"))[:32]
    from skimage import data

    out = []
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        p = tmp / f"{name}.png"
        Image.fromarray(np.asarray(getattr(data, name)())).save(p)
        out.append(p)
    return out


def tokens_per_s(manifests: Path, max_tokens: int, steps: int, out: Path) -> float:
    from uare.train import load_recipe, make_trainer
    from uare.train.parallel import DistEnv

    r = load_recipe(str(ROOT / "recipes" / "tiny" / "stage1-single.yaml"), [
        f"data.manifests={{single: {manifests / 'manifest-single.jsonl'}}}",
        f"data.max_tokens_per_pack={max_tokens}", f"train.steps={steps + 1}",
        f"train.out_dir={out}", "checkpoint.every=100000", "model.init="])
    t = make_trainer(r, env=DistEnv(), progress=False)
    t.train_step()  # warm-up: first-call allocations and thread pools
    tok, sec = 0, 0.0
    for _ in range(steps):
        t0 = time.perf_counter()
        row = t.train_step()
        sec += time.perf_counter() - t0
        tok += row["tokens"]
    return tok / sec


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3)
    args = ap.parse_args()
    from uare.data.build import BuildConfig, build

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        build(clean_images(tmp), tmp / "m", BuildConfig(kinds=("single",), per_image=2))
        base = tokens_per_s(tmp / "m", 1, args.steps, tmp / "a")
        packed = tokens_per_s(tmp / "m", 2048, args.steps, tmp / "b")
    print(f"tiny stage1-single, {torch.get_num_threads()} threads, {args.steps} timed steps of 8 samples")
    print(f"one sample per forward (baseline): 1.00x  ({base:.0f} tokens/s)")
    print(f"packed to 2048 tokens:             {packed / base:.2f}x  ({packed:.0f} tokens/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
