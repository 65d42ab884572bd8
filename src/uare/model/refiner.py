"""Refiner: a small pixel-space network after the autoencoder's decoder.

The latent (8x down-sampled, 16 channels in the tiny model) cannot hold fine detail, so
neither can a restoration decoded from it: a perfect latent of the clean image gains only
0.3 dB over a JPEG input (scripts/latent_ceiling.py). The refiner sees the decoded
restoration next to the input image, both decodings and the pixels the pipeline would
return, and adds a correction, so fine detail the input still holds can come back and
fine artefacts it holds can go. It is the idea of StableSR's controllable feature
wrapping (input features fed to the decoder), kept outside the decoder so the autoencoder,
and with it the latent space every stage trained on, stays as it is.

Optional: a model folder has one only if `refiner.safetensors` is present (its config in
the file's metadata); Bagel and FLUX decode without it. The output layer starts at zero,
so an untrained refiner returns the pipeline's pixels unchanged.

With `gate` it also takes, per pixel, a share of the input in place of the pipeline's
pixels: out = lerp(base, input, a) + correction. Keeping the input where the model only
invents (flat dark areas of a photo, JPEG at high quality) is then one output channel
instead of a correction that has to cancel the model's change exactly.

It is also told which degradations the restoration removes (those its instruction names,
or the model's analysis found; none for "enhance this mix-degraded image."): the right
correction differs by type (stay at the input's detail for JPEG, drop it for noise), and
without that one network trained on every type learned an average that helped none.

With `noise_scales` it is also told the input's noise level, estimated from the input
itself (uare.fidelity.noise_sigmas on luma, FFDNet's idea of a noise-level input): told
only "noise", one refiner traded heavy white noise for mild camera noise (session 21),
and the two differ in level and in how the level falls with scale (camera noise is
correlated: a 2x2 mean lowers white noise by half, camera noise less), so the estimate is
taken at each scale of the tuple, normalised to read the same for white noise.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from ..fidelity import _LUMA, noise_sigmas
from ..imageio import atomic_write

FILENAME = "refiner.safetensors"
GATE_START = -6.0
# the noise level's features: Gaussian bumps on log2(sigma in grey levels), from 0.5 to 64
NOISE_LOG2_RANGE = (-1.0, 6.0)


@dataclass
class RefinerConfig:
    channels: int = 48
    blocks: int = 4
    # the network runs on pixel-unshuffled inputs at 1/scale resolution: 4x fewer positions
    # and twice the receptive field for the same layers (JPEG's blocks are 8 px)
    scale: int = 2
    # the degradation types it can be told are being removed, in the order of its input
    types: tuple[str, ...] = ("blur", "noise", "jpeg", "haze", "rain", "raindrop", "lowlight", "downsample")
    # restorations that remove any of these are left as they are (not trained on them:
    # the tiny model's refiner lowered low light on held-out crops, session 18)
    skip: tuple[str, ...] = ()
    # a per-pixel share of the input (see the module's docstring); files written before it
    # was added have none
    gate: bool = False
    # told the input's noise level at these scales (see the module's docstring), each as
    # noise_bins features; () for none (files written before it was added)
    noise_scales: tuple[int, ...] = ()
    noise_bins: int = 8
    # trained on analyse-then-restore restorations whatever their analysis named, skipped
    # types included: it then runs on every analysed restoration (an analysis that names
    # low light wrongly would otherwise turn it off)
    analysed: bool = False

    def __post_init__(self):
        self.types, self.skip, self.noise_scales = tuple(self.types), tuple(self.skip), tuple(self.noise_scales)
        if self.channels < 1 or self.blocks < 0 or self.scale < 1 or self.noise_bins < 2 \
                or any(s < 1 for s in self.noise_scales):
            raise ValueError(f"refiner config: channels >= 1, blocks >= 0, scale >= 1, noise_bins >= 2 and "
                             f"noise scales >= 1 required, got {self}")

    @property
    def conditions(self) -> int:
        """Inputs of the per-channel offset: the types, then the noise level's features."""
        return len(self.types) + len(self.noise_scales) * self.noise_bins

    def noise_features(self, image: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) input in [-1, 1] -> (N, len(noise_scales) * noise_bins)."""
        w = _LUMA.to(image.device).view(1, 3, 1, 1)
        y = ((image.detach().float() + 1) * 127.5 * w).sum(1, keepdim=True)   # luma, grey levels
        lo, hi = NOISE_LOG2_RANGE
        centres = torch.linspace(lo, hi, self.noise_bins, device=image.device)
        width = (hi - lo) / (self.noise_bins - 1)
        feats = []
        for s in self.noise_scales:   # a mean of s x s white-noise pixels has 1/s its std
            sigma = noise_sigmas(F.avg_pool2d(y, s) if s > 1 else y) * s
            level = torch.log2(sigma.clamp_min(2.0 ** lo))
            feats.append(torch.exp(-0.5 * ((level[:, None] - centres) / width) ** 2))
        return torch.cat(feats, 1)

    def applies(self, removed: Sequence[str], analysed: bool = False) -> bool:
        """Whether it runs on a restoration removing these types (analysed: named by the
        model's own analysis)."""
        return (analysed and self.analysed) or not set(removed) & set(self.skip)

    def encode_types(self, names: Sequence[Sequence[str]]) -> torch.Tensor:
        """Per image, the types being removed -> (N, len(types)) multi-hot; unknown names are
        ignored (the refiner was not trained on them)."""
        out = torch.zeros(len(names), len(self.types))
        for i, these in enumerate(names):
            for t in these:
                if t in self.types:
                    out[i, self.types.index(t)] = 1.0
        return out


class _Block(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(ch, ch, 3, padding=1), nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class Refiner(nn.Module):
    # what it sees, each (N, 3, H, W) in [-1, 1]: the pixels the pipeline would return
    # (residual or direct decoding), the input, the restoration decoded, the input decoded
    INPUTS = 4

    def __init__(self, cfg: Optional[RefinerConfig] = None):
        super().__init__()
        self.cfg = cfg = cfg or RefinerConfig()
        s2 = cfg.scale * cfg.scale
        self.head = nn.Conv2d(3 * self.INPUTS * s2, cfg.channels, 3, padding=1)
        self.condition = nn.Linear(cfg.conditions, cfg.channels)   # a per-channel offset by type (and level)
        self.body = nn.Sequential(*[_Block(cfg.channels) for _ in range(cfg.blocks)])
        self.tail = nn.Conv2d(cfg.channels, (3 + cfg.gate) * s2, 3, padding=1)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)
        if cfg.gate:   # a share of sigmoid(-6) = 0.25% at the start: nearly the pipeline's pixels
            nn.init.constant_(self.tail.bias[3 * s2:], GATE_START)

    def forward(self, base: torch.Tensor, image: torch.Tensor, decoded: torch.Tensor,
                decoded_input: torch.Tensor, types: Optional[torch.Tensor] = None) -> torch.Tensor:
        """types: (N, len(cfg.types)) from cfg.encode_types; None: none named."""
        s = self.cfg.scale
        if base.shape[-1] % s or base.shape[-2] % s:
            raise ValueError(f"refiner input {base.shape[-1]}x{base.shape[-2]} is not a multiple of {s}")
        if types is None:
            types = base.new_zeros(base.shape[0], len(self.cfg.types))
        cond = types.to(base)
        if self.cfg.noise_scales:
            cond = torch.cat([cond, self.cfg.noise_features(image).to(cond)], 1)
        h = F.pixel_unshuffle(torch.cat([base, image, decoded, decoded_input], 1), s)
        h = self.body(self.head(h) + self.condition(cond)[:, :, None, None])
        out = F.pixel_shuffle(self.tail(F.relu(h)), s)
        if self.cfg.gate:
            base = torch.lerp(base, image, torch.sigmoid(out[:, 3:]))
        return base + out[:, :3]

    def start_from(self, other: "Refiner") -> "Refiner":
        """Take another refiner's weights (same channels, blocks and types); one without
        the gate gives all but the gate's output rows, which stay at their start, and one
        not told the noise level all but the level's condition columns, which start at
        zero: either way the new refiner starts out returning what the other does."""
        own = self.state_dict()
        for k, v in other.state_dict().items():
            if k == "condition.weight" and k in own and own[k].shape[0] == v.shape[0] \
                    and own[k].shape[1] > v.shape[1] == len(other.cfg.types):
                own[k].zero_()
                own[k][:, :v.shape[1]] = v
                continue
            if k not in own or own[k].shape[1:] != v.shape[1:] or own[k].shape[0] < v.shape[0]:
                raise ValueError(f"refiner weights {k}: {tuple(v.shape)} do not fit {tuple(own[k].shape)}")
            own[k][:v.shape[0]] = v
        self.load_state_dict(own)
        return self


def save_refiner(refiner: Refiner, folder: str | Path) -> Path:
    path = Path(folder) / FILENAME
    tensors = {k: v.detach().contiguous().cpu().float() for k, v in refiner.state_dict().items()}
    meta = {"config": json.dumps(asdict(refiner.cfg))}   # tuples are written as lists
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))
    return path


def load_refiner(folder: str | Path, device="cpu", dtype: Optional[torch.dtype] = None) -> Optional[Refiner]:
    """The folder's refiner, or None where it has none."""
    path = Path(folder) / FILENAME
    if not path.exists():
        return None
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            cfg = RefinerConfig(**json.loads((f.metadata() or {})["config"]))
            state = {k: f.get_tensor(k) for k in f.keys()}
    except (KeyError, TypeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: no refiner config in the file's metadata ({e})") from e
    except Exception as e:  # safetensors raises its own error types on corrupt files
        raise ValueError(f"{path}: unreadable safetensors file ({e})") from e
    refiner = Refiner(cfg)
    try:
        refiner.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ValueError(f"{path}: weights do not fit its config {cfg} ({e})") from e
    return refiner.to(device=device, dtype=dtype).requires_grad_(False).eval()
