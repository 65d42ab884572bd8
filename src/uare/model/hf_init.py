"""Initialise the understanding expert from an HF Llama/Qwen2 checkpoint, then copy it
into the generation expert (Bagel's init_moe). Needs no transformers import itself: it
takes a config dict and a state dict (e.g. from `transformers` or a safetensors file).
"""
from __future__ import annotations

import re

import torch

from .config import ConfigError, LLMConfig, ModelConfig, get_config
from .bagel import CheckpointMismatchError

# (HF name, our name); "{layer}" is a layer number.
HF_KEY_MAP: list[tuple[str, str]] = [
    ("model.embed_tokens.weight", "llm.embed_tokens.weight"),
    ("model.norm.weight", "llm.norm.und.weight"),
    ("lm_head.weight", "llm.lm_head.weight"),
    *[(f"model.layers.{{layer}}.{hf}", f"llm.layers.{{layer}}.experts.und.{ours}")
      for hf, ours in (("input_layernorm.weight", "input_layernorm.weight"),
                       ("post_attention_layernorm.weight", "post_attention_layernorm.weight"),
                       *((f"self_attn.{p}_proj.{w}", f"{p}_proj.{w}") for p in "qkvo" for w in ("weight", "bias")),
                       *((f"mlp.{p}_proj.weight", f"mlp.{p}_proj.weight") for p in ("gate", "up", "down")))],
]
_HF_RX = [(re.compile(re.escape(a).replace(r"\{layer\}", r"(?P<layer>\d+)") + "$"), b) for a, b in HF_KEY_MAP]


def hf_to_ours(key: str) -> str | None:
    for rx, target in _HF_RX:
        m = rx.match(key)
        if m:
            return target.replace("{layer}", m.groupdict().get("layer") or "")
    return None


def llm_config_from_hf(hf: dict, extra_tokens: int = 0, qk_norm: bool = True) -> LLMConfig:
    """LLMConfig from an HF Llama/Qwen2 config dict; extra_tokens rows are added to the vocab."""
    kind = hf.get("model_type")
    if kind not in ("llama", "qwen2"):
        raise ConfigError(f"model_type {kind!r}: only llama and qwen2 checkpoints are supported")
    if hf.get("rope_scaling"):
        raise ConfigError(f"rope_scaling {hf['rope_scaling']!r} is not supported (plain RoPE only)")
    heads = hf["num_attention_heads"]
    rope = hf.get("rope_theta") or (hf.get("rope_parameters") or {}).get("rope_theta", 10000.0)
    return LLMConfig(
        hidden_size=hf["hidden_size"], num_layers=hf["num_hidden_layers"], num_heads=heads,
        num_kv_heads=hf.get("num_key_value_heads") or heads, head_dim=hf.get("head_dim") or hf["hidden_size"] // heads,
        intermediate_size=hf["intermediate_size"], vocab_size=hf["vocab_size"] + extra_tokens,
        rope_theta=float(rope), rms_norm_eps=hf.get("rms_norm_eps", 1e-6), qk_norm=qk_norm,
        attention_bias=kind == "qwen2" or bool(hf.get("attention_bias", False)),
        max_position_embeddings=hf.get("max_position_embeddings", 32768))


def config_from_hf(hf: dict, base: "str | ModelConfig" = "tiny", extra_tokens: int = 0, qk_norm: bool = True) -> ModelConfig:
    """`base` with its LLM replaced by the HF one (ViT, autoencoder and latents kept)."""
    cfg = get_config(base)
    cfg.llm = llm_config_from_hf(hf, extra_tokens, qk_norm)
    return cfg.validate()


@torch.no_grad()
def init_from_hf(model, state: dict[str, torch.Tensor], tie_word_embeddings: bool = False,
                 copy_to_gen: bool = True) -> list[str]:
    """Copy an HF Llama/Qwen2 state dict into the und expert; returns our names left untouched.

    Vocab rows beyond the HF vocabulary (added special tokens) keep their initialisation.
    QK-norm weights, which HF models lack, stay at one.
    """
    ours = model.state_dict()
    if tie_word_embeddings and "lm_head.weight" not in state:
        state = {**state, "lm_head.weight": state["model.embed_tokens.weight"]}
    unknown = sorted(k for k in state if hf_to_ours(k) is None and not k.endswith("rotary_emb.inv_freq"))
    if unknown:
        raise CheckpointMismatchError(f"HF checkpoint keys with no place in the model: {', '.join(unknown[:20])}")
    filled = set()
    for k, v in state.items():
        name = hf_to_ours(k)
        if name is None:
            continue
        dst = ours.get(name)
        if dst is None or dst.shape[1:] != v.shape[1:] or dst.shape[0] < v.shape[0] or \
                (dst.shape[0] != v.shape[0] and "embed" not in name and "lm_head" not in name):
            raise CheckpointMismatchError(f"HF {k} {tuple(v.shape)} does not fit {name} "
                                          f"{None if dst is None else tuple(dst.shape)}")
        dst[: v.shape[0]].copy_(v.to(dst.dtype))
        filled.add(name)
    if copy_to_gen:
        model.llm.copy_und_to_gen()
    return sorted(k for k in ours if k.startswith("llm.") and ".gen." not in k and k not in filled)


def tokenizer_from_hf(hf_tokenizer):
    """Our Tokenizer from a transformers fast tokenizer, adding any missing specials at the end
    of the vocabulary (as Bagel's add_special_tokens does); returns (tokenizer, n_added)."""
    from tokenizers import Tokenizer as _HF

    from ..tokenizer import SPECIAL_TOKENS, Tokenizer

    tok = _HF.from_str(hf_tokenizer.backend_tokenizer.to_str())
    missing = [t for t in SPECIAL_TOKENS if tok.token_to_id(t) is None]
    before = tok.get_vocab_size(with_added_tokens=True)
    tok.add_special_tokens(missing)
    return Tokenizer(tok, "hf tokenizer"), tok.get_vocab_size(with_added_tokens=True) - before
