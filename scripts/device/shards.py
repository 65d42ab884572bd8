"""The two file steps of scripts/device/run.sh, here so that they are tested on the CPU.

    python scripts/device/shards.py widen SRC DST          # the float16 carry -> float32 folder
    python scripts/device/shards.py pack EXPORT AE OUT     # results -> <= 15 MB files for the trip back

The device tool brings back files of at most 16 MB, so the model returns in shards that
scripts/device/collect.py puts together again.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from safetensors.torch import load_file, save_file

SHARD_BYTES = 15_000_000
FOLDER_FILES = ("config.json", "ae.safetensors", "tokenizer.json", "inference.json")


def widen(src: Path, dst: Path) -> int:
    """Copy a model folder with its floating-point tensors as float32; returns the count."""
    dst.mkdir(parents=True, exist_ok=True)
    sd = load_file(str(src / "model.safetensors"))
    save_file({k: v.float() if v.is_floating_point() else v for k, v in sd.items()},
              str(dst / "model.safetensors"))
    for f in FOLDER_FILES:
        if (src / f).exists():
            shutil.copy2(src / f, dst / f)
    return len(sd)


def pack(export: Path, ae: Path, out: Path, limit: int = SHARD_BYTES) -> list[str]:
    """The exported model as model-NN.safetensors of at most `limit` bytes of tensors
    (a larger tensor goes alone), its config.json, and AE/ae.safetensors where it exists."""
    out.mkdir(parents=True, exist_ok=True)
    notes = []
    if (export / "model.safetensors").exists():
        sd = load_file(str(export / "model.safetensors"))
        shards, cur, size = [], {}, 0
        for k in sorted(sd):
            n = sd[k].numel() * sd[k].element_size()
            if cur and size + n > limit:
                shards.append(cur)
                cur, size = {}, 0
            cur[k] = sd[k].contiguous()
            size += n
        shards.append(cur)
        for i, s in enumerate(shards):
            save_file(s, str(out / f"model-{i:02d}.safetensors"))
        shutil.copy2(export / "config.json", out / "config.json")
        notes.append(f"model: {len(shards)} shards")
    else:
        notes.append("no stage-2 export")
    if (ae / "ae.safetensors").exists():
        shutil.copy2(ae / "ae.safetensors", out / "ae.safetensors")
        cfg = ae / "ae_config.json"
        notes.append("autoencoder: " + (cfg.read_text() if cfg.exists() else "no config"))
    return notes


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("widen")
    w.add_argument("src")
    w.add_argument("dst")
    p = sub.add_parser("pack")
    p.add_argument("export")
    p.add_argument("ae")
    p.add_argument("out")
    args = ap.parse_args(argv)
    if args.cmd == "widen":
        print("init", args.dst, widen(Path(args.src), Path(args.dst)), "tensors")
    else:
        print("\n".join(pack(Path(args.export), Path(args.ae), Path(args.out))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
