"""Assemble stage 1's starting folder: fresh `tiny` weights + the trained autoencoder + the
trained tokenizer (so every later stage, and the shipped model, carry both).

    python scripts/make_init.py --ae runs/tiny/autoencoder --tokenizer runs/tiny/tokenizer \
        -o runs/tiny/init [--set llm.num_layers=8 ...]

The autoencoder's scale/shift (from ae_config.json, measured on the training crops) go
into the model config, so latents reach the flow model at about unit variance.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file

from uare.model import build_model, get_config
from uare.model.config import ModelConfig
from uare.tokenizer import Tokenizer


def config_with(ae_info: dict, sets: list[str], preset: str = "tiny") -> ModelConfig:
    """The preset with the trained autoencoder's config and any `--set a.b=v` overrides."""
    d = get_config(preset).to_dict()
    d["vae"] = dict(ae_info["config"])
    for s in sets:
        key, _, value = s.partition("=")
        *parents, last = key.split(".")
        node = d
        for p in parents:
            node = node[p]
        if last not in node:
            raise ValueError(f"--set {key}: no such config key")
        node[last] = yaml.safe_load(value)
    return ModelConfig.from_dict(d)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ae", type=Path, required=True, help="folder with ae.safetensors + ae_config.json")
    ap.add_argument("--tokenizer", type=Path, required=True, help="folder with tokenizer.json")
    ap.add_argument("-o", "--out", type=Path, required=True)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    info = json.loads((args.ae / "ae_config.json").read_text())
    tok = Tokenizer.from_folder(args.tokenizer)
    cfg = config_with(info, args.set)
    if tok.vocab_size > cfg.llm.vocab_size:
        raise ValueError(f"tokenizer has {tok.vocab_size} tokens, the model only {cfg.llm.vocab_size}")
    torch.manual_seed(args.seed)
    model = build_model(cfg, tokenizer=tok)
    model.autoencoder.load_state_dict(load_file(str(args.ae / "ae.safetensors")), strict=True)
    model.save_pretrained(args.out)
    n = sum(p.numel() for p in model.parameters())
    print(f"{args.out}: {n / 1e6:.2f} M params + autoencoder {info['params'] / 1e6:.2f} M "
          f"({info['eval_psnr_rgb']} dB on dev), vocab {tok.vocab_size}/{cfg.llm.vocab_size}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
