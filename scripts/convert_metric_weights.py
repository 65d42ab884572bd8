"""One-time conversion of the LPIPS / DISTS weights to safetensors (run it elsewhere).

It lives outside the package because it needs torchvision, which uare itself never uses;
it is standalone, so it can be copied to the machine that has torchvision.

uare never unpickles, and the original files are pickles: torchvision's ImageNet
AlexNet/VGG16 checkpoints, the LPIPS v0.1 heads (`lpips` package, BSD) and the DISTS
alpha/beta (`DISTS_pytorch` package, MIT). On a machine with network access and
torchvision, in a throw-away environment:

    pip install torch torchvision lpips DISTS_pytorch safetensors
    python scripts/convert_metric_weights.py --out ~/.cache/uare

(this file needs nothing from uare: copy it there on its own if you like). It writes the
five files named in uare/metrics/weights.py; copy them to ~/.cache/uare/ (or a folder
given by $UARE_WEIGHTS_DIR or the metrics' `weights=` argument) on the machines that
run uare. The pickles are read with `torch.load(weights_only=True)`, which refuses
arbitrary objects, and only tensors are written out.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

FILES = {
    "alexnet": "alexnet.safetensors",
    "vgg16": "vgg16.safetensors",
    "lpips_alex": "lpips_v0.1_alex.safetensors",
    "lpips_vgg": "lpips_v0.1_vgg.safetensors",
    "dists": "dists_alpha_beta.safetensors",
}


def backbone_state(name: str) -> dict:
    """ImageNet weights of torchvision's alexnet / vgg16, trunk only (`features.*`)."""
    import torchvision

    if name == "alexnet":
        model = torchvision.models.alexnet(weights=torchvision.models.AlexNet_Weights.IMAGENET1K_V1)
    else:
        model = torchvision.models.vgg16(weights=torchvision.models.VGG16_Weights.IMAGENET1K_V1)
    return {k: v for k, v in model.state_dict().items() if k.startswith("features.")}


def package_file(package: str, *parts: str) -> Path:
    import importlib

    return Path(importlib.import_module(package).__file__).parent.joinpath(*parts)


def head_states() -> dict:
    import torch

    out = {}
    for net in ("alex", "vgg"):
        state = torch.load(package_file("lpips", "weights", "v0.1", f"{net}.pth"), map_location="cpu",
                           weights_only=True)
        out[f"lpips_{net}"] = {k: v for k, v in state.items() if k.startswith("lin")}
    dists = torch.load(package_file("DISTS_pytorch", "weights.pt"), map_location="cpu", weights_only=True)
    out["dists"] = {"alpha": dists["alpha"], "beta": dists["beta"]}
    return out


def main(argv=None) -> int:
    from safetensors.torch import save_file

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder to write the .safetensors files to")
    args = parser.parse_args(argv)
    out = Path(args.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    states = {"alexnet": backbone_state("alexnet"), "vgg16": backbone_state("vgg16"), **head_states()}
    for key, state in states.items():
        path = out / FILES[key]
        save_file({k: v.contiguous().float() for k, v in state.items()}, str(path))
        print(f"wrote {path} ({len(state)} tensors)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
