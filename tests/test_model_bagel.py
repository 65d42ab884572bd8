"""The Bagel key table and the Bagel-layout folder loader (on a micro-sized fake folder)."""
import json

import pytest
import torch
from safetensors.torch import save_file

from model_helpers import edit_sample, micro_config, micro_model
from uare.model.bagel import (BAGEL_KEY_MAP, CheckpointMismatchError, bagel_configs, from_bagel_key,
                              load_bagel_folder, to_bagel_key, to_bagel_state_dict)
from uare.model.uare_model import UAREModel
from uare.sequence import build_packed
from uare.tokenizer import train_tokenizer


def write_bagel_folder(model, folder, drop=None, reshape=None):
    folder.mkdir(exist_ok=True)
    sd = {k: v.contiguous() for k, v in to_bagel_state_dict(model).items()}
    if drop:
        sd.pop(drop)
    if reshape:
        sd[reshape] = torch.zeros(2, 2)
    save_file(sd, folder / "ema.safetensors")
    save_file(model.autoencoder.state_dict(), folder / "ae.safetensors")
    llm, vit = bagel_configs(model.cfg)
    (folder / "llm_config.json").write_text(json.dumps(llm))
    (folder / "vit_config.json").write_text(json.dumps(vit))
    train_tokenizer(["some words to learn", "more words"] * 5, 300).save(folder)


def test_key_map_round_trips_every_parameter_name():
    model = micro_model()
    for k in model.state_dict():
        assert from_bagel_key(to_bagel_key(k)) == k
    assert to_bagel_key("llm.layers.12.experts.gen.mlp.up_proj.weight") == \
        "language_model.model.layers.12.mlp_moe_gen.up_proj.weight"
    assert len(BAGEL_KEY_MAP) == len({a for a, _ in BAGEL_KEY_MAP})


def test_vit_config_has_one_layer_more_than_used():
    _, vit = bagel_configs(micro_config())
    assert vit["num_hidden_layers"] == micro_config().vit.num_layers + 1


def test_bagel_folder_loads_with_the_same_outputs(tmp_path):
    model = micro_model()
    write_bagel_folder(model, tmp_path / "bagel")
    loaded = load_bagel_folder(tmp_path / "bagel", base=micro_config())
    assert loaded.cfg.llm == model.cfg.llm and loaded.cfg.vit == model.cfg.vit
    p = build_packed([edit_sample(5)], model.cfg, model.special_ids)
    p.vae_timesteps = p.vae_noisy.float() * 0.3
    a, b = model(p), loaded.eval()(p)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.velocity, b.velocity)
    assert loaded.tokenizer is not None


def test_bagel_loader_names_every_difference(tmp_path):
    model = micro_model()
    write_bagel_folder(model, tmp_path / "bad", drop="language_model.model.layers.1.mlp_moe_gen.up_proj.weight",
                       reshape="vae2llm.weight")
    with pytest.raises(CheckpointMismatchError) as e:
        load_bagel_folder(tmp_path / "bad", base=micro_config())
    msg = str(e.value)
    assert "1 missing: language_model.model.layers.1.mlp_moe_gen.up_proj.weight" in msg
    assert "shape vae2llm.weight: model (64, 64), checkpoint (2, 2)" in msg


def test_from_pretrained_detects_the_bagel_layout(tmp_path):
    model = micro_model()
    write_bagel_folder(model, tmp_path / "bagel")
    # the default base is the released shape, whose FLUX autoencoder the micro folder lacks
    with pytest.raises(CheckpointMismatchError, match="ae.safetensors"):
        UAREModel.from_pretrained(tmp_path / "bagel")
