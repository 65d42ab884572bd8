"""The UARE model: a Bagel-style Mixture-of-Transformers over interleaved text and image tokens."""
from __future__ import annotations

import torch

from .config import AutoencoderConfig, ConfigError, LLMConfig, ModelConfig, PRESETS, ViTConfig, get_config
from .kv_cache import InferenceContext, KVCache
from .uare_model import ModelOutput, UAREModel


def build_model(config: "str | ModelConfig" = "tiny", device: "str | torch.device" = "cpu",
                dtype: torch.dtype | None = None, tokenizer=None) -> UAREModel:
    """A freshly initialised model; device="meta" builds the shape without memory."""
    cfg = get_config(config)
    with torch.device(device):
        model = UAREModel(cfg)
    if dtype is not None:
        model = model.to(dtype)
    if tokenizer is not None:
        model.set_tokenizer(tokenizer)
    return model


__all__ = ["AutoencoderConfig", "ConfigError", "InferenceContext", "KVCache", "LLMConfig", "ModelConfig",
           "ModelOutput", "PRESETS", "UAREModel", "ViTConfig", "build_model", "get_config"]
