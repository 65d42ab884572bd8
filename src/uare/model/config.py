"""Typed configs for the UARE model, presets `tiny` and `bagel-7b`, and their JSON form."""
from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A config value that cannot build a model; the message names the option."""


@dataclass
class LLMConfig:
    """Qwen2-style decoder; both MoT experts share this shape."""

    hidden_size: int = 256
    num_layers: int = 8
    num_heads: int = 8
    num_kv_heads: int = 2
    head_dim: int = 32
    intermediate_size: int = 704
    vocab_size: int = 4096
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-6
    qk_norm: bool = True          # a Bagel addition; HF Llama/Qwen2 have none
    attention_bias: bool = True   # Qwen2 has q/k/v biases, Llama does not
    max_position_embeddings: int = 32768
    # ids of <|im_start|>, <|im_end|>, <|vision_start|>, <|vision_end|>; train_tokenizer puts
    # them first, the Qwen2.5 vocabulary has them at 151644/151645/151652/151653
    bos_id: int = 0
    eos_id: int = 1
    vision_start_id: int = 2
    vision_end_id: int = 3

    def validate(self) -> None:
        if self.num_heads % self.num_kv_heads:
            raise ConfigError(f"llm.num_heads ({self.num_heads}) must be a multiple of llm.num_kv_heads ({self.num_kv_heads})")
        if self.head_dim % 2:
            raise ConfigError(f"llm.head_dim ({self.head_dim}) must be even for RoPE")


@dataclass
class ViTConfig:
    """SigLIP-style NaViT with a linear patch embedding and learned positions."""

    patch_size: int = 16
    hidden_size: int = 192
    intermediate_size: int = 768
    num_layers: int = 4
    num_heads: int = 3
    max_patches_per_side: int = 32
    layer_norm_eps: float = 1e-6
    # the ViT sees every image up-sampled this many times (nearest), so a patch covers
    # patch_size / view_scale pixels: a finer patch with the same weights. A 16 px patch
    # (768 values) embedded in 192 dimensions keeps little of pixel-level noise; at 2 an
    # 8 px patch can keep it all (scripts/pretrain_vit.py, model card). 1: SigLIP/Bagel.
    view_scale: int = 1

    @property
    def stride(self) -> int:
        """Image pixels per patch side."""
        return self.patch_size // self.view_scale

    @property
    def max_side(self) -> int:
        """Largest image side the ViT takes, in image pixels."""
        return self.stride * self.max_patches_per_side

    def validate(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"vit.hidden_size ({self.hidden_size}) must be divisible by vit.num_heads ({self.num_heads})")
        if self.view_scale < 1 or self.patch_size % self.view_scale:
            raise ConfigError(f"vit.view_scale ({self.view_scale}) must be a positive divisor of "
                              f"vit.patch_size ({self.patch_size})")


@dataclass
class AutoencoderConfig:
    """FLUX-style convolutional autoencoder; downsampling = 2**(len(ch_mult)-1)."""

    in_channels: int = 3
    ch: int = 32
    ch_mult: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 1
    z_channels: int = 16
    num_groups: int = 8
    mid_attention: bool = False
    scale_factor: float = 1.0
    shift_factor: float = 0.0

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)

    def validate(self) -> None:
        for m in self.ch_mult:
            if (self.ch * m) % self.num_groups:
                raise ConfigError(f"vae.ch*ch_mult ({self.ch * m}) must be divisible by vae.num_groups ({self.num_groups})")


FLOW_ANCHORS = ("velocity", "condition")
# smallest t the x0 -> velocity conversion divides by (the sampler never evaluates t = 0)
ANCHOR_T_MIN = 1e-3


@dataclass
class ModelConfig:
    llm: LLMConfig = field(default_factory=LLMConfig)
    vit: ViTConfig = field(default_factory=ViTConfig)
    vae: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    latent_patch_size: int = 2
    max_latent_size: int = 64       # latent tokens per side (Bagel release: 64)
    timestep_shift: float = 1.0
    attention: str = "auto"         # "auto" | "sdpa" | "flex" (see layers.attention)
    # What the gen head predicts. "velocity": eps - x0 directly (Bagel, the paper). "condition":
    # the clean latent as the conditioning image's latent plus a predicted correction, turned
    # into the velocity (x_t - x0_hat) / t and trained with the x0 loss. A zero head then
    # returns the input image, so a small model trained briefly starts from "no change"
    # instead of from noise (the tiny preset; see weights/uare-tiny/README.md).
    flow_anchor: str = "velocity"

    @property
    def latent_token_dim(self) -> int:
        return self.latent_patch_size ** 2 * self.vae.z_channels

    @property
    def pixels_per_latent_token(self) -> int:
        return self.vae.downsample * self.latent_patch_size

    def validate(self) -> "ModelConfig":
        self.llm.validate()
        self.vit.validate()
        self.vae.validate()
        if self.attention not in ("auto", "sdpa", "flex"):
            raise ConfigError(f"attention must be auto, sdpa or flex, not {self.attention!r}")
        if self.flow_anchor not in FLOW_ANCHORS:
            raise ConfigError(f"flow_anchor must be one of {FLOW_ANCHORS}, not {self.flow_anchor!r}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        d = dict(d)
        subs = {"llm": LLMConfig, "vit": ViTConfig, "vae": AutoencoderConfig}
        kwargs: dict[str, Any] = {}
        for name, sub in subs.items():
            kwargs[name] = _build(sub, d.pop(name, {}), prefix=name + ".")
        kwargs.update(_known(cls, d, prefix=""))
        return cls(**kwargs).validate()

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "ModelConfig":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (json.JSONDecodeError, TypeError) as e:
            raise ConfigError(f"{path}: not a model config ({e})") from e


def _known(cls, d: dict[str, Any], prefix: str) -> dict[str, Any]:
    names = {f.name for f in fields(cls)} - {"llm", "vit", "vae"}
    unknown = [k for k in d if k not in names]
    if unknown:
        raise ConfigError(f"unknown config keys: {', '.join(prefix + k for k in unknown)}")
    return dict(d)


def _build(cls, d: dict[str, Any], prefix: str):
    kw = _known(cls, d, prefix)
    if "ch_mult" in kw:
        kw["ch_mult"] = tuple(kw["ch_mult"])
    return cls(**kw)


def _bagel_7b() -> ModelConfig:
    llm = LLMConfig(hidden_size=3584, num_layers=28, num_heads=28, num_kv_heads=4, head_dim=128,
                    intermediate_size=18944, vocab_size=152064, rope_theta=1e6,
                    max_position_embeddings=32768, bos_id=151644, eos_id=151645,
                    vision_start_id=151652, vision_end_id=151653)
    # 27 layers in vit_config.json, but Bagel drops the last one (penultimate-layer features)
    vit = ViTConfig(patch_size=14, hidden_size=1152, intermediate_size=4304, num_layers=26,
                    num_heads=16, max_patches_per_side=70)
    vae = AutoencoderConfig(ch=128, ch_mult=(1, 2, 4, 4), num_res_blocks=2, num_groups=32,
                            mid_attention=True, scale_factor=0.3611, shift_factor=0.1159)
    return ModelConfig(llm=llm, vit=vit, vae=vae, latent_patch_size=2, max_latent_size=64,
                       timestep_shift=4.0)  # UARE paper Table A.1 (Bagel default is 1.0)


# tiny: sized by docs/cpu-budget.md (hidden 256, 8 layers ~ 2-3k tokens/s fwd+bwd on 2 cores);
# 4x-down autoencoder because 8x needs far longer training here to stop capping quality
# (ch 32: a step costs ~1/4 of ch 64's, measured). Vocabulary 1280: the BPE trained on our
# own texts stops at 1,180 merges. max_latent_size 32 (canvases up to 256 px; the shipped
# inference.json restores in 128 px tiles, the training crop) and SwiGLU 576 keep the
# shipped folder under 60 MB in fp32 (model 53.3 MB + autoencoder 3.8 MB). flow_anchor
# "condition": see ModelConfig and the model card (session 1's velocity head at ~1M tokens
# stayed 19 dB below bicubic). vit.view_scale 2: a 16 px patch's 768 values in 192 dimensions
# lost pixel noise; at 2x a patch covers 8 px and the scores follow noise and JPEG (card).
PRESETS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(llm=LLMConfig(vocab_size=1280, intermediate_size=576), vit=ViTConfig(view_scale=2),
                        max_latent_size=32, timestep_shift=4.0, flow_anchor="condition"),
    "bagel-7b": _bagel_7b()}


def get_config(name_or_config: "str | ModelConfig") -> ModelConfig:
    """A private copy of a preset (or of the given config), validated."""
    if isinstance(name_or_config, ModelConfig):
        return copy.deepcopy(name_or_config).validate()
    if name_or_config not in PRESETS:
        raise ConfigError(f"unknown model preset {name_or_config!r}; known: {', '.join(PRESETS)}")
    return copy.deepcopy(PRESETS[name_or_config]).validate()
