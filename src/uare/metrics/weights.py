"""Finding the weight files of the deep metrics (safetensors only).

The backbones are torchvision's ImageNet AlexNet / VGG16 and the heads come from the
LPIPS (BSD) and DISTS (MIT) releases. None of them can ship or download here, and the
original files are pickles, which uare never loads. Convert them once, on any machine
with torchvision, with `python scripts/convert_metric_weights.py --out ~/.cache/uare`, and
copy the resulting .safetensors files into one of the folders searched below.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

import torch
from torch import nn

FILES = {
    "alexnet": "alexnet.safetensors",          # torchvision alexnet-owt-7be5be79, features.*
    "vgg16": "vgg16.safetensors",              # torchvision vgg16-397923af, features.*
    "lpips_alex": "lpips_v0.1_alex.safetensors",  # lin0..lin4 heads of LPIPS v0.1
    "lpips_vgg": "lpips_v0.1_vgg.safetensors",
    "dists": "dists_alpha_beta.safetensors",   # alpha, beta: (1, 1475, 1, 1)
}


class WeightsNotFoundError(FileNotFoundError):
    """A deep metric's weight file is missing; the message names the files and folders."""


def search_dirs(weights: Optional[Union[str, os.PathLike]] = None) -> list[Path]:
    """Folders searched, first hit wins: the argument, $UARE_WEIGHTS_DIR, ~/.cache/uare."""
    dirs = [Path(weights).expanduser()] if weights else []
    if os.environ.get("UARE_WEIGHTS_DIR"):
        dirs.append(Path(os.environ["UARE_WEIGHTS_DIR"]).expanduser())
    dirs.append(Path.home() / ".cache" / "uare")
    return dirs


def find(keys: tuple[str, ...], weights=None) -> dict[str, Path]:
    """Paths of the named files; raises WeightsNotFoundError listing all that are missing."""
    if weights and Path(weights).is_file():
        raise WeightsNotFoundError(f"{weights}: pass the folder that holds the weight files, not a file")
    dirs = search_dirs(weights)
    found, missing = {}, []
    for key in keys:
        hit = next((d / FILES[key] for d in dirs if (d / FILES[key]).is_file()), None)
        if hit is None:
            missing.append(FILES[key])
        else:
            found[key] = hit
    if missing:
        raise WeightsNotFoundError(
            f"missing weight file(s) {', '.join(missing)}; looked in {', '.join(str(d) for d in dirs)}. "
            "Make them once with `python scripts/convert_metric_weights.py --out ~/.cache/uare` on a machine "
            "with torchvision (see uare/metrics/weights.py)")
    return found


def load_into(module: nn.Module, path: Path, prefix: str = "") -> None:
    """Load a safetensors file into module (keys under `prefix`); any missing or extra
    tensor, or a shape mismatch, is an error naming the file."""
    from safetensors.torch import load_file

    state = {k[len(prefix):]: v for k, v in load_file(str(path)).items() if k.startswith(prefix)}
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise ValueError(f"{path}: does not fit {type(module).__name__} "
                         f"(missing {missing[:4]}{'...' if len(missing) > 4 else ''}, unexpected {extra[:4]})")
    for k, v in state.items():
        if v.shape != expected[k].shape:
            raise ValueError(f"{path}: {k} has shape {tuple(v.shape)}, expected {tuple(expected[k].shape)}")
    module.load_state_dict({k: v.float() for k, v in state.items()})


def to_tensor(pixels) -> torch.Tensor:
    """(N,H,W,3) float64 on 0-255 -> (N,3,H,W) float32 in [0, 1]."""
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div_(255.0).contiguous()
