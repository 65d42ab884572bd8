"""The one table between our parameter names and BAGEL-7B-MoT's, and the Bagel folder loader.

Bagel folder: llm_config.json (Qwen2), vit_config.json (SigLIP, one layer more than used),
ema.safetensors (all LLM-side weights), ae.safetensors (FLUX AE), tokenizer files.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import torch

from .config import ConfigError, LLMConfig, ModelConfig, ViTConfig, get_config

_L = "language_model.model.layers.{layer}."
_VIT = "vit_model.vision_model."

# (our name, Bagel name). "{layer}" is a layer number, "*" the rest of the key (weight/bias/...).
BAGEL_KEY_MAP: list[tuple[str, str]] = [
    ("llm.embed_tokens.*", "language_model.model.embed_tokens.*"),
    ("llm.norm.und.*", "language_model.model.norm.*"),
    ("llm.norm.gen.*", "language_model.model.norm_moe_gen.*"),
    ("llm.lm_head.*", "language_model.lm_head.*"),
    *[(f"llm.layers.{{layer}}.experts.{e}.{ours}.*", _L + theirs + sfx + ".*")
      for e, sfx in (("und", ""), ("gen", "_moe_gen"))
      for ours, theirs in (("input_layernorm", "input_layernorm"),
                           ("post_attention_layernorm", "post_attention_layernorm"),
                           ("q_proj", "self_attn.q_proj"), ("k_proj", "self_attn.k_proj"),
                           ("v_proj", "self_attn.v_proj"), ("o_proj", "self_attn.o_proj"),
                           ("q_norm", "self_attn.q_norm"), ("k_norm", "self_attn.k_norm"),
                           ("mlp", "mlp"))],
    ("vit.patch_embedding.*", _VIT + "embeddings.patch_embedding.*"),
    ("vit.position_embedding.*", _VIT + "embeddings.position_embedding.*"),
    ("vit.layers.{layer}.*", _VIT + "encoder.layers.{layer}.*"),
    ("vit.post_layernorm.*", _VIT + "post_layernorm.*"),
    ("connector.*", "connector.*"),
    ("vit_pos_embed.*", "vit_pos_embed.*"),
    ("latent_pos_embed.*", "latent_pos_embed.*"),
    ("time_embedder.*", "time_embedder.*"),
    ("vae2llm.*", "vae2llm.*"),
    ("llm2vae.*", "llm2vae.*"),
]


class CheckpointMismatchError(ValueError):
    """Checkpoint names/shapes differ from the model's; the message lists every difference."""


def _regex(pattern: str) -> re.Pattern:
    r = re.escape(pattern).replace(r"\{layer\}", r"(?P<layer>\d+)").replace(r"\*", r"(?P<rest>.+)")
    return re.compile(r + "$")


_FORWARD = [(_regex(a), b) for a, b in BAGEL_KEY_MAP]
_BACKWARD = [(_regex(b), a) for a, b in BAGEL_KEY_MAP]


def _translate(key: str, table) -> str | None:
    for rx, target in table:
        m = rx.match(key)
        if m:
            g = m.groupdict()
            return target.replace("{layer}", g.get("layer") or "").replace("*", g.get("rest") or "")
    return None


def to_bagel_key(key: str) -> str:
    out = _translate(key, _FORWARD)
    if out is None:
        raise KeyError(f"no Bagel name for parameter {key!r} (add it to BAGEL_KEY_MAP)")
    return out


def from_bagel_key(key: str) -> str | None:
    """Our name for a Bagel key, or None if the table has no row for it."""
    return _translate(key, _BACKWARD)


def to_bagel_state_dict(model) -> dict[str, torch.Tensor]:
    return {to_bagel_key(k): v for k, v in model.state_dict().items()}


def check_shapes(expected: dict[str, tuple], found: dict[str, tuple], source: str) -> None:
    """Raise CheckpointMismatchError naming missing, unexpected and wrong-shape keys."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = sorted(k for k in set(expected) & set(found) if tuple(expected[k]) != tuple(found[k]))
    if not (missing or unexpected or wrong):
        return
    lines = [f"{source}: checkpoint does not match the model"]
    for title, keys in (("missing", missing), ("unexpected", unexpected)):
        if keys:
            lines.append(f"  {len(keys)} {title}: " + ", ".join(keys[:20]) + (" ..." if len(keys) > 20 else ""))
    for k in wrong[:20]:
        lines.append(f"  shape {k}: model {tuple(expected[k])}, checkpoint {tuple(found[k])}")
    raise CheckpointMismatchError("\n".join(lines))


def config_from_bagel(llm: dict, vit: dict, base: str | ModelConfig = "bagel-7b") -> ModelConfig:
    """ModelConfig from Bagel's llm_config.json / vit_config.json (ViT loses its last layer)."""
    cfg = get_config(base)
    heads = llm["num_attention_heads"]
    cfg.llm = LLMConfig(
        hidden_size=llm["hidden_size"], num_layers=llm["num_hidden_layers"], num_heads=heads,
        num_kv_heads=llm.get("num_key_value_heads", heads),
        head_dim=llm.get("head_dim") or llm["hidden_size"] // heads,
        intermediate_size=llm["intermediate_size"], vocab_size=llm["vocab_size"],
        rope_theta=float(llm.get("rope_theta", 10000.0)), rms_norm_eps=llm.get("rms_norm_eps", 1e-6),
        qk_norm=True, attention_bias=True, max_position_embeddings=llm.get("max_position_embeddings", 32768),
        bos_id=cfg.llm.bos_id, eos_id=cfg.llm.eos_id,
        vision_start_id=cfg.llm.vision_start_id, vision_end_id=cfg.llm.vision_end_id)
    cfg.vit = ViTConfig(
        patch_size=vit["patch_size"], hidden_size=vit["hidden_size"], intermediate_size=vit["intermediate_size"],
        num_layers=vit["num_hidden_layers"] - 1, num_heads=vit["num_attention_heads"],
        max_patches_per_side=vit["image_size"] // vit["patch_size"], layer_norm_eps=vit.get("layer_norm_eps", 1e-6))
    return cfg.validate()


def bagel_configs(cfg: ModelConfig) -> tuple[dict, dict]:
    """The inverse of config_from_bagel: (llm_config, vit_config) dicts in Bagel's format."""
    c, v = cfg.llm, cfg.vit
    if v.view_scale != 1:
        raise ConfigError(f"vit.view_scale {v.view_scale}: Bagel's ViT sees images at 1x and has no such setting")
    llm = {"model_type": "qwen2", "hidden_size": c.hidden_size, "num_hidden_layers": c.num_layers,
           "num_attention_heads": c.num_heads, "num_key_value_heads": c.num_kv_heads, "head_dim": c.head_dim,
           "intermediate_size": c.intermediate_size, "vocab_size": c.vocab_size, "rope_theta": c.rope_theta,
           "rms_norm_eps": c.rms_norm_eps, "max_position_embeddings": c.max_position_embeddings,
           "hidden_act": "silu", "tie_word_embeddings": False}
    vit = {"model_type": "siglip_vision_model", "patch_size": v.patch_size, "hidden_size": v.hidden_size,
           "intermediate_size": v.intermediate_size, "num_hidden_layers": v.num_layers + 1,
           "num_attention_heads": v.num_heads, "image_size": v.patch_size * v.max_patches_per_side,
           "layer_norm_eps": v.layer_norm_eps, "hidden_act": "gelu_pytorch_tanh"}
    return llm, vit


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointMismatchError(f"{path}: unreadable config ({e})") from e


def load_bagel_folder(folder: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
                      base: str | ModelConfig = "bagel-7b"):
    """UAREModel from a BAGEL-7B-MoT-layout folder; every name and shape is checked first.

    The JSON configs fix the LLM and ViT; the autoencoder, max_latent_size and shift come
    from `base` (Bagel hard-codes them: FLUX AE, 64).
    """
    from safetensors import safe_open

    from ..tokenizer import Tokenizer
    from .folder import load_autoencoder, materialize
    from .uare_model import UAREModel

    folder = Path(folder)
    cfg = config_from_bagel(_read_json(folder / "llm_config.json"), _read_json(folder / "vit_config.json"), base)
    tok = Tokenizer.from_folder(folder)
    cfg.llm.bos_id, cfg.llm.eos_id = tok.bos_id, tok.eos_id
    cfg.llm.vision_start_id, cfg.llm.vision_end_id = tok.vision_start_id, tok.vision_end_id
    weights = folder / "ema.safetensors"
    if not weights.exists():
        raise CheckpointMismatchError(f"{folder}: no ema.safetensors")
    with safe_open(str(weights), framework="pt") as f:
        if "latent_pos_embed.pos_embed" in f.keys():
            # Bagel's config default (32) differs from the release (64); trust the table itself
            rows = f.get_slice("latent_pos_embed.pos_embed").get_shape()[0]
            if math.isqrt(rows) ** 2 == rows:
                cfg.max_latent_size = math.isqrt(rows)
    with torch.device("meta"):
        model = UAREModel(cfg)
    expected = {to_bagel_key(k): tuple(v.shape) for k, v in model.state_dict().items()}
    with safe_open(str(weights), framework="pt", device=str(device)) as f:
        check_shapes(expected, {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}, str(weights))
        state = {from_bagel_key(k): f.get_tensor(k) for k in f.keys()}
    if dtype is not None:
        state = {k: v.to(dtype) for k, v in state.items()}
    model.load_state_dict(state, assign=True, strict=True)
    materialize(model, device)
    load_autoencoder(model, folder / "ae.safetensors", device, dtype)
    object.__setattr__(model, "tokenizer", tok)
    return model
