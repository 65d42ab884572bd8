"""Throughput of the Real-ESRGAN degradation from 400x400 GT: one by one and batched.

Prints images per second for both and their ratio (batched / one-by-one), measured in
this process, for each torch thread count in --threads, with the 1-minute load average
before and after (another job on the 2 cores shows up there and in the figures).
One by one, each image uses all the torch threads; batched, `realesrgan_batch` runs
whole samples on as many threads as torch has, one torch thread each (threads in this
process, no worker processes). --chunks also times the grouped full-resolution path
(USM and first blur for that many samples at once, the default on a GPU). Run it alone:
`flock /tmp/uare-cpu.lock .venv/bin/python bench/degradations.py`.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from uare.degradations import realesrgan_batch


def gt_batch(n: int, size: int = 400) -> torch.Tensor:
    """n crops of scikit-image's public-domain photos (astronaut, coffee, rocket)."""
    from skimage import data

    photos = [data.astronaut(), data.coffee(), data.rocket()]
    rng = np.random.default_rng(0)
    crops = []
    for i in range(n):
        p = photos[i % len(photos)]
        y = rng.integers(0, p.shape[0] - size + 1)
        x = rng.integers(0, p.shape[1] - size + 1)
        crops.append(p[y:y + size, x:x + size])
    arr = np.stack(crops).astype(np.float32) / 255.0
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


def images_per_second(fn, n_images: int, repeats: int) -> float:
    fn()  # warm-up: first calls pay for allocation and kernel selection
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return n_images / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", default="1,2", help="torch thread counts to time, e.g. 1,2")
    ap.add_argument("--chunks", default="", help="also time these full-resolution chunk sizes, e.g. 2,4,16")
    ap.add_argument("--profile", action="store_true",
                    help="print the top functions of a batched call by time (use with --threads 1: "
                         "cProfile sees only the calling thread, not the batch's worker threads)")
    args = ap.parse_args()
    gt = gt_batch(args.batch)
    seeds = list(range(args.batch))

    def one_by_one():
        for i in range(args.batch):
            realesrgan_batch(gt[i:i + 1], seeds[i:i + 1])

    def batched():
        realesrgan_batch(gt, seeds)

    for threads in [int(t) for t in args.threads.split(",") if t.strip()]:
        torch.set_num_threads(threads)
        report(threads, args, gt, seeds, one_by_one, batched)


def report(threads, args, gt, seeds, one_by_one, batched) -> None:
    load_before = os.getloadavg()[0]
    with torch.no_grad():
        single = images_per_second(one_by_one, args.batch, args.repeats)
        batch = images_per_second(batched, args.batch, args.repeats)
        others = {int(c): images_per_second(lambda c=int(c): realesrgan_batch(gt, seeds, chunk=c),
                                            args.batch, args.repeats)
                  for c in args.chunks.split(",") if c.strip()}
        if args.profile:
            import cProfile
            import pstats
            prof = cProfile.Profile()
            prof.runcall(batched)
            pstats.Stats(prof).sort_stats("tottime").print_stats(15)
    print(f"realesrgan 400x400 -> 100x100, torch threads {threads}, batch {args.batch}, "
          f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after")
    print(f"one by one: {single:7.1f} images/s")
    print(f"batched:    {batch:7.1f} images/s")
    print(f"batched / one by one: {batch / single:.2f}x")
    for c, v in others.items():
        print(f"batched, chunk {c:3d}: {v:7.1f} images/s ({v / single:.2f}x one by one)")


if __name__ == "__main__":
    main()
