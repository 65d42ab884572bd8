"""Model folders (interface.md): config.json + model.safetensors + ae.safetensors + tokenizer.json.

Writes go to temporary names and are renamed into place; reads use safetensors only.
A folder in BAGEL-7B-MoT layout (llm_config.json, ...) loads through bagel.py.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .autoencoder import Autoencoder
from .bagel import CheckpointMismatchError, check_shapes, load_bagel_folder
from ..imageio import atomic_write, write_text
from .config import ModelConfig

FORMAT = "uare"


def _atomic_save(tensors: dict[str, torch.Tensor], path: Path, meta: dict[str, str] | None = None) -> None:
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))


def save_pretrained(model, folder: str | Path) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _atomic_save(model.state_dict(), folder / "model.safetensors", {"format": FORMAT})
    _atomic_save(model.autoencoder.state_dict(), folder / "ae.safetensors")
    if model.tokenizer is not None:
        model.tokenizer.save(folder)
    # last: a folder with config.json is complete
    write_text(folder / "config.json", json.dumps({"model_type": FORMAT, **model.cfg.to_dict()}, indent=2) + "\n")
    return folder


def _read_checked(path: Path, module: torch.nn.Module, device) -> dict[str, torch.Tensor]:
    if not path.exists():
        raise CheckpointMismatchError(f"{path}: missing")
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            check_shapes(expected, {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}, str(path))
            return {k: f.get_tensor(k) for k in f.keys()}
    except CheckpointMismatchError:
        raise
    except Exception as e:  # safetensors raises its own error types on corrupt files
        raise CheckpointMismatchError(f"{path}: unreadable safetensors file ({e})") from e


def materialize(model, device) -> None:
    """Recompute non-persistent buffers left on meta after an assign-load."""
    rot = model.llm.rotary
    c = model.cfg.llm
    rot.inv_freq = 1.0 / c.rope_theta ** (torch.arange(0, c.head_dim, 2, dtype=torch.float32, device=device) / c.head_dim)


def load_autoencoder(model, path: Path, device, dtype=None) -> None:
    with torch.device("meta"):
        ae = Autoencoder(model.cfg.vae)
    state = _read_checked(path, ae, device)
    if dtype is not None:
        state = {k: v.to(dtype) for k, v in state.items()}
    ae.load_state_dict(state, assign=True, strict=True)
    object.__setattr__(model, "autoencoder", ae.requires_grad_(False).eval())


def from_pretrained(folder: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None):
    """A UAREModel from our folder layout or a Bagel-layout folder."""
    from ..tokenizer import Tokenizer
    from .uare_model import UAREModel

    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointMismatchError(f"{folder}: not a model folder")
    if (folder / "llm_config.json").exists() and not (folder / "config.json").exists():
        return load_bagel_folder(folder, device, dtype)
    raw = json.loads((folder / "config.json").read_text()) if (folder / "config.json").exists() else {}
    if raw.pop("model_type", None) != FORMAT:
        raise CheckpointMismatchError(f"{folder}: no uare config.json (and not a Bagel-layout folder)")
    cfg = ModelConfig.from_dict(raw)
    with torch.device("meta"):
        model = UAREModel(cfg)
    state = _read_checked(folder / "model.safetensors", model, device)
    if dtype is not None:
        state = {k: v.to(dtype) for k, v in state.items()}
    model.load_state_dict(state, assign=True, strict=True)
    materialize(model, device)
    load_autoencoder(model, folder / "ae.safetensors", device, dtype)
    if (folder / "tokenizer.json").exists():
        model.set_tokenizer(Tokenizer.from_file(folder / "tokenizer.json"))
    return model
