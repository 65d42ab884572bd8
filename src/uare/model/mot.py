"""The Mixture-of-Transformers decoder: two experts (und, gen), one shared attention.

Routing is by position, never learned. Callers put the und tokens first and the gen
tokens after them (a fixed permutation of the packed sequence, applied once to the
inputs, positions and mask); every layer then only splits and concatenates, and the
same code serves training, prefill and denoising.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .config import LLMConfig
from .layers import RMSNorm, Rotary, SwiGLU, apply_rotary

EXPERTS = ("und", "gen")
# attend(layer_index, q (L,Hq,d), k (L,Hkv,d), v (L,Hkv,d)) -> (L,Hq,d)
AttendFn = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class Expert(nn.Module):
    """Every per-expert weight of one decoder layer."""

    def __init__(self, cfg: LLMConfig):
        super().__init__()
        d, hd = cfg.hidden_size, cfg.head_dim
        self.input_layernorm = RMSNorm(d, cfg.rms_norm_eps)
        self.q_proj = nn.Linear(d, cfg.num_heads * hd, bias=cfg.attention_bias)
        self.k_proj = nn.Linear(d, cfg.num_kv_heads * hd, bias=cfg.attention_bias)
        self.v_proj = nn.Linear(d, cfg.num_kv_heads * hd, bias=cfg.attention_bias)
        self.o_proj = nn.Linear(cfg.num_heads * hd, d, bias=False)
        self.q_norm = RMSNorm(hd, cfg.rms_norm_eps) if cfg.qk_norm else nn.Identity()
        self.k_norm = RMSNorm(hd, cfg.rms_norm_eps) if cfg.qk_norm else nn.Identity()
        self.post_attention_layernorm = RMSNorm(d, cfg.rms_norm_eps)
        self.mlp = SwiGLU(d, cfg.intermediate_size)
        self.heads = (cfg.num_heads, cfg.num_kv_heads, hd)

    def qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        hq, hkv, hd = self.heads
        x = self.input_layernorm(x)
        q = self.q_norm(self.q_proj(x).view(-1, hq, hd))
        k = self.k_norm(self.k_proj(x).view(-1, hkv, hd))
        return q, k, self.v_proj(x).view(-1, hkv, hd)

    def finish(self, h: torch.Tensor, attn_out: torch.Tensor, detach: bool = False) -> torch.Tensor:
        a = self.o_proj(attn_out.flatten(1))
        h = h + (a.detach() if detach else a)
        m = self.mlp(self.post_attention_layernorm(h))
        return h + (m.detach() if detach else m)


class MoTLayer(nn.Module):
    def __init__(self, cfg: LLMConfig):
        super().__init__()
        self.experts = nn.ModuleDict({name: Expert(cfg) for name in EXPERTS})

    def forward(self, h: torch.Tensor, n_und: int, cos: torch.Tensor, sin: torch.Tensor,
                attend: AttendFn, index: int, freeze_und: bool = False) -> torch.Tensor:
        """h (L, D) with the n_und und tokens first; cos/sin (L, 1, d) in the same order."""
        parts = _split(h, n_und)
        qkv = [_maybe_detach(self.experts[name].qkv(x), name, freeze_und) for name, x in parts]
        q, k, v = (torch.cat([t[i] for t in qkv]) if len(qkv) > 1 else qkv[0][i] for i in range(3))
        out = attend(index, apply_rotary(q, cos, sin), apply_rotary(k, cos, sin), v)
        outs = _split(out, n_und)
        done = [self.experts[name].finish(x, o, freeze_und and name == "und")
                for (name, x), (_, o) in zip(parts, outs)]
        return torch.cat(done) if len(done) > 1 else done[0]


def _maybe_detach(qkv: tuple, name: str, freeze_und: bool) -> tuple:
    return tuple(t.detach() for t in qkv) if freeze_und and name == "und" else qkv


def _split(x: torch.Tensor, n_und: int) -> list[tuple[str, torch.Tensor]]:
    # skipping empty parts keeps single-expert calls (text decode) free of zero-size matmuls
    n = x.shape[0]
    if n_und == n:
        return [("und", x)]
    if n_und == 0:
        return [("gen", x)]
    return [("und", x[:n_und]), ("gen", x[n_und:])]


class MoTDecoder(nn.Module):
    """Token embeddings, MoT layers, per-expert final norms and the text head."""

    def __init__(self, cfg: LLMConfig):
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(MoTLayer(cfg) for _ in range(cfg.num_layers))
        self.norm = nn.ModuleDict({name: RMSNorm(cfg.hidden_size, cfg.rms_norm_eps) for name in EXPERTS})
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        self.rotary = Rotary(cfg.head_dim, cfg.rope_theta)
        # Bagel's freeze_und: und activations are detached (not parameter freezing), so gen
        # tokens train against und K/V as constants; lm_head still learns
        self.freeze_und = False

    def forward(self, h: torch.Tensor, n_und: int, position_ids: torch.Tensor,
                attend: AttendFn) -> tuple[torch.Tensor, torch.Tensor]:
        """h (L, D) input embeddings, und tokens first; returns normed (und (n_und, D), gen (L-n_und, D))."""
        cos, sin = self.rotary(position_ids, h.dtype)
        frozen = self.freeze_und and self.training
        if frozen:
            h = torch.cat([h[:n_und].detach(), h[n_und:]])
        for i, layer in enumerate(self.layers):
            h = layer(h, n_und, cos, sin, attend, i, frozen)
        und = self.norm["und"](h[:n_und])
        return (und.detach() if frozen else und), self.norm["gen"](h[n_und:])

    def copy_und_to_gen(self) -> None:
        """Bagel's init_moe: the gen expert starts as a copy of the und expert."""
        with torch.no_grad():
            for layer in self.layers:
                layer.experts["gen"].load_state_dict(layer.experts["und"].state_dict())
            self.norm["gen"].load_state_dict(self.norm["und"].state_dict())
