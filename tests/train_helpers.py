"""Shared pieces of the trainer tests: a micro model, a fake degrader, a tiny dataset."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from uare.data.build import BuildConfig, build
from uare.imageio import atomic_write
from uare.model.config import AutoencoderConfig, LLMConfig, ModelConfig, ViTConfig
from uare.train.recipe import load_recipe


def micro_config() -> ModelConfig:
    llm = LLMConfig(hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=1, head_dim=16,
                    intermediate_size=64, vocab_size=400)
    vit = ViTConfig(patch_size=8, hidden_size=16, intermediate_size=32, num_layers=1, num_heads=2,
                    max_patches_per_side=8)
    vae = AutoencoderConfig(ch=8, ch_mult=(1, 2), num_res_blocks=1, num_groups=4)
    return ModelConfig(llm=llm, vit=vit, vae=vae, max_latent_size=16, timestep_shift=4.0)


def fake_degrade(image, preset, seed=0):
    """Blur or darken by the preset, with a design.md-shaped record (degradations stand-in)."""
    types = ["blur", "noise"] if preset is None else preset.split(":", 1)[-1].split("+")
    if preset == "realesrgan":
        types = ["blur", "noise", "jpeg"]
    rng = np.random.default_rng(seed)
    out = image.filter(ImageFilter.GaussianBlur(1.5))
    if "lowlight" in types:
        out = Image.fromarray((np.asarray(out) * 0.4).astype(np.uint8))
    sev = {t: float(rng.uniform(0.1, 0.9)) for t in types}
    rec = {"preset": preset, "seed": seed, "scale": 1, "input_size": list(image.size),
           "output_size": list(out.size), "steps": [{"type": t, "op": "x", "params": {}} for t in types],
           "severity": sev}
    return out, rec


def make_dataset(tmp: Path, photo: np.ndarray, n: int = 3) -> Path:
    clean = tmp / "clean"
    clean.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(np.ascontiguousarray(np.roll(photo, 17 * i, axis=1))).save(clean / f"{i}.png")
    out = tmp / "manifests"
    build(sorted(clean.glob("*.png")), out, BuildConfig(per_image=2, seed=0))
    return out


def write_recipe(tmp: Path, manifests: Path, stage: int, **train) -> Path:
    kinds = ["single"] if stage == 1 else ["single", "interleaved", "iqa"]
    ratios = {"single": 1.0} if stage == 1 else {"single": 0.3, "interleaved": 0.4, "iqa": 0.3}
    recipe = {
        "name": f"micro-stage{stage}",
        "data": {"manifests": {k: str(manifests / f"manifest-{k}.jsonl") for k in kinds},
                 "ratios": ratios, "crop": 32, "res_min_short": 16, "res_max_long": 32,
                 "iqa_min_short": 16, "iqa_max_long": 32, "samples_per_step": 4,
                 "max_tokens_per_pack": 1, "prefetch": True},
        "optim": {"lr": 3e-3, "warmup_steps": 1},
        "train": {"stage": stage, "steps": 6, "trainable": "restoration" if stage == 1 else "all",
                  "ema_decay": 0.9, "out_dir": str(tmp / f"run{stage}"), **train},
        "checkpoint": {"every": 1, "keep_latest": 2},
        "log": {"tensorboard": False},
    }
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / f"stage{stage}.yaml"
    # Every rank of a torchrun worker writes the same recipe and then reads it: written in
    # place, one rank could read the file while another had just truncated it.
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(recipe)))
    return path


def recipe_for(tmp: Path, manifests: Path, stage: int, overrides=(), **train):
    return load_recipe(str(write_recipe(tmp, manifests, stage, **train)), list(overrides))
