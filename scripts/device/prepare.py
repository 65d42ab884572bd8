"""Pack what a time-boxed GPU continuation of the tiny recipe needs into one folder.

    python scripts/device/prepare.py --init weights/uare-tiny --data ../shared/data/train \
        --manifests runs/tiny-data -o .gpu
    python scripts/device/prepare.py --data ../shared/data/train -o .gpu   # photos only (refiner.sh)

A lent GPU machine sees only the repository (64 MiB with what it carries), not
../shared/data, so the folder holds: the training photos as JPEG q95 4:4:4 (25 MB instead
of 69 MB of PNG; the q95 error, ~45 dB, is far below what the tiny model resolves), the
manifests with their image paths pointed at those copies, and the starting model with its
weights in float16 (half the bytes; run.sh widens them back to float32 before training).
Without --init and --manifests, the photos alone: scripts/device/refiner.sh needs no more
(the model it restores with is the repository's own weights/uare-tiny, float32).
Keep the folder out of git (.git/info/exclude): the photos are research-licensed.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from uare.imageio import list_images, load_image


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--init", help="model folder to continue from (run.sh)")
    ap.add_argument("--data", required=True, help="folder of the training photos")
    ap.add_argument("--manifests", help="`uare data build` folder made from --data (run.sh)")
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--quality", type=int, default=95)
    args = ap.parse_args(argv)
    if (args.init is None) != (args.manifests is None):
        ap.error("--init and --manifests go together (run.sh needs both; refiner.sh neither)")
    out, data = Path(args.out), Path(args.data)
    out.mkdir(parents=True, exist_ok=True)

    moved = {}
    for p in list_images(data, recursive=True):
        rel = p.relative_to(data).with_suffix(".jpg")
        dst = out / "train" / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        load_image(p).save(dst, "JPEG", quality=args.quality, subsampling=0)
        moved[str(p.resolve())] = str(dst)
    if args.init is None:
        size = sum(f.stat().st_size for f in (out / "train").rglob("*") if f.is_file())
        print(f"{out}: {len(moved)} photos, {size / 2**20:.1f} MiB")
        return 0
    (out / "tiny-data").mkdir(exist_ok=True)
    for m in sorted(Path(args.manifests).glob("manifest-*.jsonl")):
        lines = []
        for line in m.read_text().splitlines():
            rec = json.loads(line)
            src = str(Path(rec["image"]).resolve())
            if src not in moved:
                raise SystemExit(f"{m}: {rec['image']} is not under {data}")
            rec["image"] = moved[src]
            lines.append(json.dumps(rec))
        (out / "tiny-data" / m.name).write_text("\n".join(lines) + "\n")

    init = Path(args.init)
    sd = load_file(str(init / "model.safetensors"))
    half = {k: v.half() if v.is_floating_point() else v for k, v in sd.items()}
    worst = max(float(((h.float() - v).abs().max() / v.abs().max().clamp_min(1e-12)))
                for h, v in zip(half.values(), sd.values()) if v.is_floating_point())
    if not all(torch.isfinite(h.float()).all() for h in half.values() if h.is_floating_point()):
        raise SystemExit("float16 overflows a weight: carry float32 instead")
    (out / "init").mkdir(exist_ok=True)
    save_file(half, str(out / "init" / "model.safetensors"))
    for f in ("config.json", "ae.safetensors", "tokenizer.json", "inference.json"):
        if (init / f).exists() or f in ("config.json", "ae.safetensors"):
            shutil.copy2(init / f, out / "init" / f)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"{out}: {len(moved)} photos, float16 weights (worst relative error {worst:.1e}), "
          f"{size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
