"""UAREModel: configs, training forward, expert routing, the bagel-7b shape, save/load."""
import json

import pytest
import torch

from model_helpers import edit_sample, micro_config, micro_model
from uare import losses
from uare.model import ConfigError, ModelConfig, build_model, get_config
from uare.model.uare_model import UAREModel
from uare.sequence import Text, VitImage, build_packed


def pack(model, samples, t=0.5):
    p = build_packed(samples, model.cfg, model.special_ids)
    p.vae_timesteps = torch.where(p.vae_noisy, torch.tensor(t), torch.tensor(0.0))
    return p


def test_config_json_round_trip_and_unknown_keys(tmp_path):
    cfg = get_config("bagel-7b")
    cfg.save(tmp_path / "c.json")
    assert ModelConfig.load(tmp_path / "c.json") == cfg
    d = cfg.to_dict()
    d["llm"]["hidden_sizee"] = 3
    with pytest.raises(ConfigError, match="llm.hidden_sizee"):
        ModelConfig.from_dict(d)
    with pytest.raises(ConfigError, match="num_kv_heads"):
        ModelConfig.from_dict({"llm": {"num_heads": 6, "num_kv_heads": 4}})


def test_vit_view_scale_divides_the_patch_and_bagel_has_none():
    from uare.model.bagel import bagel_configs

    cfg = ModelConfig.from_dict({"vit": {"patch_size": 16, "view_scale": 2}})
    assert (cfg.vit.stride, cfg.vit.max_side) == (8, 8 * cfg.vit.max_patches_per_side)
    with pytest.raises(ConfigError, match="view_scale"):
        ModelConfig.from_dict({"vit": {"patch_size": 16, "view_scale": 3}})
    with pytest.raises(ConfigError, match="view_scale"):
        bagel_configs(cfg)
    assert ModelConfig.from_dict({}).vit.view_scale == 1   # config.json files from before it


def test_tiny_preset_has_a_4x_autoencoder_and_gqa():
    cfg = get_config("tiny")
    assert cfg.vae.downsample == 4 and cfg.llm.num_kv_heads < cfg.llm.num_heads
    assert cfg.latent_token_dim == 64


def test_forward_shapes_and_llm2vae_starts_at_zero():
    torch.manual_seed(0)
    model = build_model(micro_config())
    p = pack(model, [edit_sample(0)])
    out = model(p)
    assert out.logits.shape == (3, 300) and out.velocity.shape == (6, 64)
    assert torch.all(out.velocity == 0)


def test_two_packed_samples_match_each_alone():
    model = micro_model()
    a, b = edit_sample(1), edit_sample(2)
    together = model(pack(model, [a, b]))
    alone = [model(pack(model, [s])) for s in (a, b)]
    torch.testing.assert_close(together.logits, torch.cat([o.logits for o in alone]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(together.velocity, torch.cat([o.velocity for o in alone]), atol=1e-5, rtol=1e-5)


def test_text_only_loss_leaves_every_gen_weight_without_gradient():
    model = micro_model().train()
    p = build_packed([[VitImage(torch.zeros(3, 16, 16)), Text([5, 6, 7]), Text([8, 9], loss=True)]],
                     model.cfg, model.special_ids)
    loss = losses.compute_losses(model(p), p).total
    loss.backward()
    gen = [n for n, _ in model.named_parameters() if ".gen." in n or n.startswith(("llm2vae", "vae2llm", "time_embedder"))]
    assert gen
    for name, prm in model.named_parameters():
        if name in gen:
            assert prm.grad is None or not prm.grad.any(), name
    assert model.llm.layers[0].experts["und"].q_proj.weight.grad.abs().sum() > 0


def test_flow_loss_reaches_gen_expert_and_noisy_tokens_do_not_leak():
    model = micro_model().train()
    a = edit_sample(3)
    p = losses.add_flow_noise(build_packed([a], model.cfg, model.special_ids), 4.0, torch.Generator().manual_seed(0))
    out = model(p)
    losses.compute_losses(out, p, ce_weight=0.25).total.backward()
    assert model.llm.layers[0].experts["gen"].q_proj.weight.grad.abs().sum() > 0
    # changing the noisy target must not change the logits of the text after it
    b = edit_sample(3, noisy_latent=torch.randn(16, 4, 6) * 5)
    with torch.no_grad():
        torch.testing.assert_close(model(pack(model, [a])).logits, model(pack(model, [b])).logits)


def test_gen_expert_starts_as_a_copy_of_und():
    model = build_model(micro_config())
    layer = model.llm.layers[1].experts
    for (n, u), (_, g) in zip(layer["und"].named_parameters(), layer["gen"].named_parameters()):
        assert torch.equal(u, g), n


BAGEL_LAYER_KEYS = [
    *(f"self_attn.{p}_proj{s}.{w}" for p in "qkv" for s in ("", "_moe_gen") for w in ("weight", "bias")),
    "self_attn.o_proj.weight", "self_attn.o_proj_moe_gen.weight",
    *(f"self_attn.{p}_norm{s}.weight" for p in "qk" for s in ("", "_moe_gen")),
    *(f"mlp{s}.{p}_proj.weight" for s in ("", "_moe_gen") for p in ("gate", "up", "down")),
    *(f"{n}{s}.weight" for n in ("input_layernorm", "post_attention_layernorm") for s in ("", "_moe_gen")),
]
VIT_LAYER_KEYS = [f"{m}.{w}" for m in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                       "self_attn.out_proj", "layer_norm1", "layer_norm2", "mlp.fc1", "mlp.fc2")
                  for w in ("weight", "bias")]


def expected_bagel_keys():
    """Written from bagel-facts §5, independently of bagel.py's table."""
    keys = {"language_model.model.embed_tokens.weight", "language_model.model.norm.weight",
            "language_model.model.norm_moe_gen.weight", "language_model.lm_head.weight",
            "vit_model.vision_model.embeddings.patch_embedding.weight",
            "vit_model.vision_model.embeddings.patch_embedding.bias",
            "vit_model.vision_model.embeddings.position_embedding.weight",
            "vit_model.vision_model.post_layernorm.weight", "vit_model.vision_model.post_layernorm.bias",
            "vit_pos_embed.pos_embed", "latent_pos_embed.pos_embed"}
    keys |= {f"language_model.model.layers.{i}.{k}" for i in range(28) for k in BAGEL_LAYER_KEYS}
    keys |= {f"vit_model.vision_model.encoder.layers.{i}.{k}" for i in range(26) for k in VIT_LAYER_KEYS}
    keys |= {f"{m}.{w}" for m in ("connector.fc1", "connector.fc2", "time_embedder.mlp.0", "time_embedder.mlp.2",
                                  "vae2llm", "llm2vae") for w in ("weight", "bias")}
    return keys


def test_meta_bagel_7b_has_bagels_key_set_and_shapes():
    from uare.model.bagel import to_bagel_state_dict

    model = build_model("bagel-7b", device="meta")
    sd = to_bagel_state_dict(model)
    assert set(sd) == expected_bagel_keys()
    shapes = {
        "language_model.model.embed_tokens.weight": (152064, 3584),
        "language_model.model.layers.0.self_attn.k_proj_moe_gen.weight": (512, 3584),
        "language_model.model.layers.27.mlp_moe_gen.down_proj.weight": (3584, 18944),
        "language_model.model.layers.3.self_attn.q_norm.weight": (128,),
        "vit_model.vision_model.embeddings.patch_embedding.weight": (1152, 588),
        "vit_model.vision_model.embeddings.position_embedding.weight": (4900, 1152),
        "vit_pos_embed.pos_embed": (4900, 3584), "latent_pos_embed.pos_embed": (4096, 3584),
        "vae2llm.weight": (3584, 64), "llm2vae.weight": (64, 3584), "connector.fc1.weight": (3584, 1152),
    }
    for k, s in shapes.items():
        assert tuple(sd[k].shape) == s, k
    total = sum(v.numel() for v in sd.values())
    assert 14.5e9 < total < 14.7e9
    ae = sum(p.numel() for p in model.autoencoder.parameters())
    assert 80e6 < ae < 88e6      # FLUX AE, about 84M


def test_save_load_round_trips_bit_exactly(tmp_path):
    from uare.tokenizer import train_tokenizer

    model = micro_model()
    model.set_tokenizer(train_tokenizer(["a quality score of 3", "restore"] * 5, 300))
    model.save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["ae.safetensors", "config.json",
                                                                 "model.safetensors", "tokenizer.json"]
    again = UAREModel.from_pretrained(tmp_path / "m")
    for name, t in model.state_dict().items():
        assert torch.equal(t, again.state_dict()[name]), name
    for name, t in model.autoencoder.state_dict().items():
        assert torch.equal(t, again.autoencoder.state_dict()[name]), name
    p = pack(model, [edit_sample(4)])
    assert torch.equal(model(p).velocity, again.eval()(p).velocity)
    assert again.tokenizer.encode("restore") == model.tokenizer.encode("restore")
    assert json.loads((tmp_path / "m" / "config.json").read_text())["model_type"] == "uare"


def test_load_names_missing_and_misshaped_weights(tmp_path):
    from safetensors.torch import load_file, save_file

    from uare.model.bagel import CheckpointMismatchError

    micro_model().save_pretrained(tmp_path)
    sd = load_file(tmp_path / "model.safetensors")
    sd.pop("llm.norm.gen.weight")
    sd["vae2llm.bias"] = torch.zeros(3)
    save_file(sd, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointMismatchError) as e:
        UAREModel.from_pretrained(tmp_path)
    assert "llm.norm.gen.weight" in str(e.value) and "vae2llm.bias" in str(e.value)


@pytest.mark.slow   # compiling flex_attention takes ~30 s here
def test_flex_backend_gives_the_sdpa_outputs():
    model = micro_model()
    p = pack(model, [edit_sample(8), edit_sample(9)])
    with torch.no_grad():   # flex_attention has no CPU backward (torch 2.13)
        want = model(p)
        model.cfg.attention = "flex"
        got = model(p)
    torch.testing.assert_close(got.velocity, want.velocity, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got.logits, want.logits, atol=1e-4, rtol=1e-4)


def test_freeze_und_trains_only_gen_tokens_path():
    model = micro_model().train()
    model.llm.freeze_und = True
    p = losses.add_flow_noise(build_packed([edit_sample(10)], model.cfg, model.special_ids), 4.0,
                              torch.Generator().manual_seed(0))
    losses.compute_losses(model(p), p).total.backward()
    und = model.llm.layers[0].experts["und"]
    assert all(prm.grad is None or not prm.grad.any() for prm in und.parameters())
    assert model.llm.layers[0].experts["gen"].q_proj.weight.grad.abs().sum() > 0
    assert model.llm.lm_head.weight.grad.abs().sum() > 0


def test_anchored_head_at_zero_predicts_the_condition_and_trains_on_x0():
    """flow_anchor="condition": a zero head gives x0 = the conditioning latent, the velocity
    is (x_t - x0) / t, and the loss is the x0 error (= velocity error * t^2)."""
    from uare.losses import add_flow_noise, compute_losses
    from uare.sequence import latents_to_tokens

    model = micro_model(flow_anchor="condition")
    with torch.no_grad():
        model.llm2vae.weight.zero_()
    sample = edit_sample(3)
    clean, target = sample[0].latent, sample[3].latent
    p = add_flow_noise(build_packed([sample], model.cfg, model.special_ids), shift=1.0,
                       generator=torch.Generator().manual_seed(0))
    out = model(p)
    rows = p.mse_rows
    torch.testing.assert_close(out.x0, latents_to_tokens(clean))
    t = p.vae_timesteps[rows][:, None]
    torch.testing.assert_close(out.velocity, (p.vae_tokens[rows] - out.x0) / t)
    loss = compute_losses(out, p).mse
    want = (latents_to_tokens(clean) - latents_to_tokens(target)).pow(2).mean(dim=1).mean()
    torch.testing.assert_close(loss, want, atol=1e-5, rtol=1e-5)
    v_loss = ((out.velocity - p.flow_target).pow(2).mean(dim=1) * t[:, 0] ** 2).mean()
    torch.testing.assert_close(loss, v_loss, atol=1e-5, rtol=1e-4)


def test_anchored_noisy_tokens_see_their_own_condition_token():
    """anchor2llm adds each noisy token's condition token to its input, and stage 1
    trains it (it is on the restoration side)."""
    from uare.train.trainer import set_trainable

    model = micro_model(flow_anchor="condition")
    sample = edit_sample(3)
    p = build_packed([sample], model.cfg, model.special_ids)
    p.vae_timesteps = torch.where(p.vae_noisy, torch.tensor(0.5), torch.tensor(0.0))
    before = model(p).velocity
    with torch.no_grad():
        model.anchor2llm.weight.normal_(std=0.5)
    assert not torch.allclose(model(p).velocity, before)
    names = set_trainable(model, "restoration")
    assert any(n.startswith("anchor2llm.") for n in names)


def test_anchored_model_takes_a_pack_without_images():
    """A stage-2 pack can hold only text/IQA samples: no latents, nothing to anchor."""
    model = micro_model(flow_anchor="condition")
    p = build_packed([[Text([5, 6, 7]), Text([8, 9], loss=True)]], model.cfg, model.special_ids)
    out = model(p)
    assert out.velocity.shape == (0, 64) and out.logits.shape[0] == 3
