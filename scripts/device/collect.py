"""Reassemble what scripts/device/run.sh sent back into a model folder.

    python scripts/device/collect.py FILES_DIR --init weights/uare-tiny -o runs/tiny/gpu \
        [--decoder new|old]

FILES_DIR holds model-NN.safetensors shards, config.json and ae.safetensors (the
decoder-tuned autoencoder). The tokenizer and inference settings come from --init, the
model the job started from; --decoder old keeps --init's autoencoder (to compare).
A tensor the job left as it was carried (equal to --init's rounded to float16: a frozen
side, say) comes back as --init's float32 value, so frozen parameters stay bit for bit.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def _restore_untouched(sd: dict, init: dict) -> int:
    """Replace each tensor equal to its init's float16 rounding by the init's own value
    (prepare.py carried float16); returns how many were replaced."""
    kept = 0
    for k, v in sd.items():
        a = init.get(k)
        if a is not None and a.is_floating_point() and a.shape == v.shape and torch.equal(v, a.half().to(v.dtype)):
            sd[k] = a.clone()
            kept += 1
    return kept


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files")
    ap.add_argument("--init", required=True)
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--decoder", choices=["new", "old"], default="new")
    args = ap.parse_args(argv)
    src, init, out = Path(args.files), Path(args.init), Path(args.out)
    shards = sorted(src.glob("model-*.safetensors"))
    if not shards:
        raise SystemExit(f"{src}: no model-*.safetensors shards")
    sd = {}
    for s in shards:
        part = load_file(str(s))
        if set(part) & set(sd):
            raise SystemExit(f"{s}: repeats tensors of an earlier shard")
        sd.update(part)
    kept = _restore_untouched(sd, load_file(str(init / "model.safetensors")))
    out.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(out / "model.safetensors.tmp"))
    os.replace(out / "model.safetensors.tmp", out / "model.safetensors")
    cfg = json.loads((src / "config.json").read_text())
    if cfg != json.loads((init / "config.json").read_text()):
        raise SystemExit(f"{src}/config.json differs from {init}/config.json")
    ae = src / "ae.safetensors" if args.decoder == "new" and (src / "ae.safetensors").exists() else init / "ae.safetensors"
    for f, frm in (("config.json", src), ("tokenizer.json", init), ("inference.json", init)):
        if (frm / f).exists():
            shutil.copy2(frm / f, out / f)
    shutil.copy2(ae, out / "ae.safetensors")
    print(f"{out}: {len(sd)} tensors from {len(shards)} shards ({kept} unchanged by the job, "
          f"taken from {init} in full precision), autoencoder from {ae}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
