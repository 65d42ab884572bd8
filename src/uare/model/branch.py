"""Pixel branches: small plain CNNs, each trained on one degradation type alone.

The tiny model's latent (8x down-sampled) cannot hold JPEG's 8-pixel blocks, and the
refiner after its decoder, trained on every type at once with a zero-started output, never
learnt to deblock: trained on JPEG alone for 4,000 steps it had not moved, while a plain
CNN of the same size started at random began after ~2,000 steps and beat the input on all
88 tune photo-severities after 9,000 (session 23, model card). So a restoration that
removes one type alone, for which the model folder has a branch, is that branch's output
on the input image, as ARCNN and DnCNN restore: the generation side is not run (the
analysis is, when asked for, and it decides). A folder without `branches.safetensors`,
Bagel's or FLUX's, restores as before.

The network: pixel-unshuffle by `scale` (4x fewer positions, twice the receptive field),
`layers` 3x3 convolutions with ReLUs between, pixel-shuffle back, added to the input. With
`residual`, the convolutions between the first and the last go in pairs, each pair adding
its output to what it read (ResNet blocks), started with He init and a zero last layer:
a plain stack of ten under PyTorch's default init passes almost nothing to its first
layers, and learnt white noise at sigma 15 by 0.5 dB in 300 steps where the residual one
learnt 3.0 (session 25); the same parameters, the same file layout.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from ..imageio import atomic_write

FILENAME = "branches.safetensors"


@dataclass
class BranchConfig:
    type: str                 # the degradation type it removes (uare.degradations' names)
    channels: int = 48
    layers: int = 10          # 3x3 convolutions, the first and the last included
    scale: int = 2
    residual: bool = False    # pairs of convolutions with skips (layers even, >= 4)

    def __post_init__(self):
        if self.channels < 1 or self.layers < 2 or self.scale < 1:
            raise ValueError(f"branch config: channels >= 1, layers >= 2 and scale >= 1 required, got {self}")
        if self.residual and (self.layers < 4 or self.layers % 2):
            raise ValueError(f"branch config: a residual branch needs an even number of layers >= 4, got {self}")


class Branch(nn.Module):
    def __init__(self, cfg: BranchConfig):
        super().__init__()
        self.cfg = cfg
        s2, ch = cfg.scale * cfg.scale, cfg.channels
        sizes = [3 * s2] + [ch] * (cfg.layers - 1) + [3 * s2]
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1) for a, b in zip(sizes, sizes[1:]))
        if cfg.residual:
            for conv in self.convs[:-1]:
                nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
                nn.init.zeros_(conv.bias)
            for conv in self.convs[2:-1:2]:   # each block's second: the sum starts near its input
                conv.weight.data.mul_(0.1)
            nn.init.zeros_(self.convs[-1].weight)
            nn.init.zeros_(self.convs[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] -> the same, restored (not clamped). Any H, W: sides that
        are no multiple of `scale` are padded by reflection and cropped back."""
        s, (h, w) = self.cfg.scale, x.shape[-2:]
        ph, pw = -h % s, -w % s
        y = F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x
        z = F.pixel_unshuffle(y * 2 - 1, s)
        if self.cfg.residual:
            z = self.convs[0](z)
            for a, b in zip(self.convs[1:-1:2], self.convs[2:-1:2]):
                z = z + b(F.relu(a(z)))
            z = self.convs[-1](F.relu(z))
        else:
            for i, conv in enumerate(self.convs):
                z = conv(F.relu(z) if i else z)
        return x + F.pixel_shuffle(z, s)[..., :h, :w] * 0.5


ENSEMBLE_SIZES = (1, 2, 4, 8)


def check_ensemble(n, what: str = "ensemble") -> int:
    """A self-ensemble size (text or number) as an int, or a ValueError naming `what`."""
    try:
        f = float(str(n).strip())
        v = int(f) if f.is_integer() else None
    except ValueError:
        v = None
    if v not in ENSEMBLE_SIZES or isinstance(n, bool):
        raise ValueError(f"{what} must be one of {', '.join(map(str, ENSEMBLE_SIZES))}, got {n!r}")
    return v


def self_ensemble(fn, x: torch.Tensor, n: int, on_pass: Optional[Callable[[], None]] = None) -> torch.Tensor:
    """The mean of fn over n of the 8 flips and rotations of x (N, C, H, W), each output
    transformed back (the geometric self-ensemble of EDSR+ and Timofte et al.'s "seven
    ways"): a net whose errors differ between the views averages them down. n = 1, 2
    (left-right flip), 4 (both flips: the sides stay as they are) or 8 (also transposed).
    Only for a net trained without a preferred orientation or phase: session 26's noise
    branch, trained on one phase of the colour pattern, lost 2 dB by it. on_pass() is told
    after each of the n passes (a progress bar's unit: n passes cost n times one)."""
    n = check_ensemble(n, "self-ensemble size")
    acc = None
    for k in range(n):
        dims = [d for d, bit in ((-1, 1), (-2, 2)) if k & bit]
        y = x.transpose(-1, -2) if k & 4 else x
        y = fn(y.flip(dims) if dims else y)
        y = y.flip(dims) if dims else y   # a flip is its own inverse; undone before the transpose
        y = y.transpose(-1, -2) if k & 4 else y
        acc = y if acc is None else acc + y
        if on_pass is not None:
            on_pass()
    return acc / n


def save_branches(branches: dict[str, Branch], folder: str | Path, dtype: torch.dtype = torch.float32) -> Path:
    """All of a folder's branches in one file, each under its type's name. float16 halves
    a shipped file (the bundled JPEG branch's output moved by at most 0.05 of a grey level);
    training state keeps float32."""
    path = Path(folder) / FILENAME
    tensors = {f"{t}.{k}": v.detach().contiguous().cpu().to(dtype)
               for t, b in branches.items() for k, v in b.state_dict().items()}
    meta = {"branches": json.dumps({t: asdict(b.cfg) for t, b in branches.items()})}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))
    return path


def load_branches(folder: str | Path, device="cpu", dtype: Optional[torch.dtype] = None) -> dict[str, Branch]:
    """The folder's branches by type; {} where it has none."""
    path = Path(folder) / FILENAME
    if not path.exists():
        return {}
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            cfgs = {t: BranchConfig(**c) for t, c in json.loads((f.metadata() or {})["branches"]).items()}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except (KeyError, TypeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: no branch configs in the file's metadata ({e})") from e
    except ValueError as e:   # a config out of range
        raise ValueError(f"{path}: {e}") from e
    except Exception as e:  # safetensors raises its own error types on corrupt files
        raise ValueError(f"{path}: unreadable safetensors file ({e})") from e
    out = {}
    for t, cfg in cfgs.items():
        if cfg.type != t:
            raise ValueError(f"{path}: the branch stored as {t!r} says it removes {cfg.type!r}")
        b = Branch(cfg)
        own = {k[len(t) + 1:]: v for k, v in state.items() if k.startswith(t + ".")}
        try:
            b.load_state_dict(own, strict=True)
        except RuntimeError as e:
            raise ValueError(f"{path}: the {t} branch's weights do not fit its config {cfg} ({e})") from e
        out[t] = b.to(device=device, dtype=dtype).requires_grad_(False).eval()
    return out
