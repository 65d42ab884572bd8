"""scripts/train_autoencoder.py: decoder-only continuation and the time box."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from uare.model.autoencoder import Autoencoder
from uare.model.config import AutoencoderConfig
from script_helpers import load_script



def _script():
    return load_script("scripts/train_autoencoder.py")


def _setup(tmp_path, small_photo):
    cfg = AutoencoderConfig(ch=8, ch_mult=(1, 2), num_res_blocks=1, num_groups=4,
                            scale_factor=0.77, shift_factor=0.05)
    torch.manual_seed(0)
    ae = Autoencoder(cfg)
    init = tmp_path / "init"
    init.mkdir()
    save_file({k: v.contiguous() for k, v in ae.state_dict().items()}, str(init / "ae.safetensors"))
    (init / "ae_config.json").write_text(json.dumps({"config": asdict(cfg)}))
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(2):
        Image.fromarray(np.ascontiguousarray(np.roll(small_photo, 9 * i, axis=0))).save(photos / f"{i}.png")
    return init, photos


def _recipe(tmp_path, init, photos, **extra) -> Path:
    r = {"init": str(init), "train_dirs": [str(photos)], "eval_dirs": [str(photos)], "eval_limit": 1,
         "eval_crop": 32, "crop": 16, "batch": 2, "lr": 1e-3, "steps": 6, "every": 3, "threads": 1,
         "out_dir": str(tmp_path / "out"), **extra}
    p = tmp_path / "r.json"
    p.write_text(json.dumps(r))
    return p


def test_decoder_only_keeps_the_encoder_and_latent_scale_bit_for_bit(tmp_path, small_photo):
    init, photos = _setup(tmp_path, small_photo)
    assert _script().main([str(_recipe(tmp_path, init, photos, train_encoder=False))]) == 0
    before, after = load_file(str(init / "ae.safetensors")), load_file(str(tmp_path / "out" / "ae.safetensors"))
    enc = [k for k in before if k.startswith("encoder.")]
    dec = [k for k in before if k.startswith("decoder.")]
    assert enc and all(torch.equal(before[k], after[k]) for k in enc)
    assert any(not torch.equal(before[k], after[k]) for k in dec)
    cfg = json.loads((tmp_path / "out" / "ae_config.json").read_text())["config"]
    assert (cfg["scale_factor"], cfg["shift_factor"]) == (0.77, 0.05)  # latents unchanged: kept


def test_full_training_moves_the_encoder_and_refits_the_latent_scale(tmp_path, small_photo):
    init, photos = _setup(tmp_path, small_photo)
    assert _script().main([str(_recipe(tmp_path, init, photos))]) == 0
    before, after = load_file(str(init / "ae.safetensors")), load_file(str(tmp_path / "out" / "ae.safetensors"))
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("encoder."))
    cfg = json.loads((tmp_path / "out" / "ae_config.json").read_text())["config"]
    assert cfg["scale_factor"] != 0.77


def test_a_time_box_decays_the_lr_and_finishes_early(tmp_path, small_photo):
    mod = _script()
    r = mod.AERecipe(lr=1.0, decay_from=0, lr_end_ratio=0.1, steps=1000)
    assert mod.lr_at(r, 0) == 1.0 and abs(mod.lr_at(r, 0, time_frac=0.5) - 0.55) < 1e-9
    assert abs(mod.lr_at(r, 10, time_frac=1.0) - 0.1) < 1e-9
    init, photos = _setup(tmp_path, small_photo)
    path = _recipe(tmp_path, init, photos, steps=10_000_000, decay_from=0)
    assert mod.main([str(path), "--max-minutes", "0.002", "--time-box"]) == 0
    info = json.loads((tmp_path / "out" / "ae_config.json").read_text())
    assert 0 < info["steps"] < 10_000_000  # stopped by the clock, yet finished
