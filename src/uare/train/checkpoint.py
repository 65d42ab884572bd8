"""Resumable training state in `step-N` folders, written atomically (no pickle anywhere).

A folder holds:
- `model.safetensors`: the full model state dict (frozen parameters included);
- `ema.safetensors`: the same, with the trainable parameters replaced by their EMA, so it
  loads as a model on its own (the released Bagel weights are an EMA file too);
- `ae.safetensors`: the frozen autoencoder, which is not part of the model's state dict
  (Bagel keeps it apart) but defines the latent space the model is trained in;
- `optimizer.safetensors` + `optimizer.json`: AdamW moments keyed by parameter name, and
  the param groups;
- `rng-rank<r>.safetensors`: torch CPU (and CUDA) generator states of each rank;
- `trainer.json`: step, data position, world size, python RNG state;
- `COMPLETE`: written last. The folder is built under a temporary name and renamed, so a
  killed run leaves either a complete folder or a `.tmp-*` one that resume ignores.
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from safetensors.torch import load_file, save_file

MARKER = "COMPLETE"
STEP_RE = re.compile(r"^step-(\d+)$")


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be resumed from; the message names it."""


@dataclass
class TrainerState:
    step: int                 # optimizer steps done
    data_position: int        # samples consumed (global)
    world_size: int = 1


def step_dir(root: Path, step: int) -> Path:
    return Path(root) / f"step-{step:07d}"


def complete_steps(root: Path) -> list[tuple[int, Path]]:
    """(step, folder) of every complete checkpoint under root, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    out = []
    for p in root.iterdir():
        m = STEP_RE.match(p.name)
        if m and (p / MARKER).exists():
            out.append((int(m.group(1)), p))
    return sorted(out)


def latest(root: Path) -> Optional[Path]:
    steps = complete_steps(root)
    return steps[-1][1] if steps else None


def _contiguous(sd: dict) -> dict:
    return {k: v.detach().to("cpu").contiguous() for k, v in sd.items()}


def flatten_optimizer(osd: dict) -> tuple[dict, list]:
    """Optimizer state keyed by parameter name -> (tensors for safetensors, param groups)."""
    tensors = {}
    for name, state in osd["state"].items():
        for key, value in state.items():
            t = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"{name}/{key}"] = t.detach().to("cpu").contiguous()
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()}
              for g in osd["param_groups"]]
    return tensors, groups


def unflatten_optimizer(tensors: dict, groups: list) -> dict:
    state: dict = {}
    for flat, t in tensors.items():
        name, _, key = flat.rpartition("/")
        state.setdefault(name, {})[key] = t
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    return {"state": state, "param_groups": groups}


def rng_state() -> dict:
    out = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            out[f"torch_cuda_{i}"] = s
    return out


def set_rng_state(tensors: dict) -> None:
    torch.set_rng_state(tensors["torch_cpu"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("torch_cuda_")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


def tmp_dir(root: Path, step: int) -> Path:
    return Path(root) / f".tmp-step-{step:07d}"


def write_rank_rng(root: Path, step: int, rank: int) -> None:
    """Every rank writes its own generator state into the folder being built."""
    d = tmp_dir(root, step)
    d.mkdir(parents=True, exist_ok=True)
    save_file(rng_state(), str(d / f"rng-rank{rank}.safetensors"))


def write_main(root: Path, state: TrainerState, model_sd: dict, ema_sd: dict,
               optim_sd: dict, keep_latest: int, ae_sd: Optional[dict] = None) -> Path:
    """Rank 0: write the shared files, mark complete, rename into place, purge old ones."""
    d = tmp_dir(root, state.step)
    d.mkdir(parents=True, exist_ok=True)
    save_file(_contiguous(model_sd), str(d / "model.safetensors"))
    save_file(_contiguous(ema_sd), str(d / "ema.safetensors"))
    if ae_sd is not None:
        save_file(_contiguous(ae_sd), str(d / "ae.safetensors"))
    tensors, groups = flatten_optimizer(optim_sd)
    save_file(tensors, str(d / "optimizer.safetensors"))
    (d / "optimizer.json").write_text(json.dumps({"param_groups": groups}))
    (d / "trainer.json").write_text(json.dumps({
        "step": state.step, "data_position": state.data_position,
        "world_size": state.world_size, "python_rng": _py_rng()}))
    (d / MARKER).write_text(str(state.step))
    final = step_dir(root, state.step)
    if final.exists():  # a re-run of the same step (resume after a crash mid-purge)
        shutil.rmtree(final)
    os.replace(d, final)
    purge(root, keep_latest)
    return final


def _py_rng() -> list:
    v, internal, gauss = random.getstate()
    return [v, list(internal), gauss]


def purge(root: Path, keep_latest: int) -> None:
    """Keep the newest `keep_latest` complete folders; drop older ones and stale temps."""
    steps = complete_steps(root)
    for _, p in steps[:-keep_latest] if keep_latest > 0 else []:
        shutil.rmtree(p, ignore_errors=True)
    newest = steps[-1][0] if steps else -1
    for p in Path(root).glob(".tmp-step-*"):
        if int(p.name.rsplit("-", 1)[1]) <= newest:
            shutil.rmtree(p, ignore_errors=True)


@dataclass
class Loaded:
    state: TrainerState
    model: dict
    ema: dict
    optimizer: dict
    rng: Optional[dict]
    ae: Optional[dict] = None


def load(folder: Path, rank: int = 0) -> Loaded:
    folder = Path(folder)
    if not (folder / MARKER).exists():
        raise CheckpointError(f"{folder}: incomplete checkpoint (no {MARKER} marker)")
    try:
        meta = json.loads((folder / "trainer.json").read_text())
        groups = json.loads((folder / "optimizer.json").read_text())["param_groups"]
        model = load_file(str(folder / "model.safetensors"))
        ema = load_file(str(folder / "ema.safetensors"))
        optim = unflatten_optimizer(load_file(str(folder / "optimizer.safetensors")), groups)
    except (OSError, ValueError, KeyError) as e:
        raise CheckpointError(f"{folder}: unreadable checkpoint ({e})") from e
    rng_file = folder / f"rng-rank{rank}.safetensors"
    rng = load_file(str(rng_file)) if rng_file.exists() else None
    ae = load_file(str(folder / "ae.safetensors")) if (folder / "ae.safetensors").exists() else None
    v, internal, gauss = meta["python_rng"]
    random.setstate((v, tuple(internal), gauss))
    state = TrainerState(meta["step"], meta["data_position"], meta.get("world_size", 1))
    return Loaded(state, model, ema, optim, rng, ae)
