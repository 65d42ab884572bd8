"""SigLIP-style NaViT: linear patch embedding, learned positions, per-image attention."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import ViTConfig
from .layers import segment_attention


class ImageSizeError(ValueError):
    """An image whose size the model cannot take; the message says which constraint failed."""


def vit_patchify(pixels: torch.Tensor, patch: int, max_side: int,
                 view_scale: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """(3, H, W) -> patches (h*w, patch*patch*3) in (row, col, channel) order, pos ids (h*w,).

    view_scale s > 1 repeats every pixel s x s times first (nearest up-sampling), so each
    patch covers patch/s pixels of the image: a patch/s embedding with the same weights.
    At 1x a 16 px patch (768 values) is projected to a few hundred dimensions, which keeps
    little of pixel-level noise; at 2x the projection of an 8 px patch can keep it all."""
    if view_scale > 1:
        pixels = pixels.repeat_interleave(view_scale, -1).repeat_interleave(view_scale, -2)
    c, H, W = pixels.shape
    if H % patch or W % patch:
        raise ImageSizeError(f"ViT input {W}x{H} is not a multiple of the patch size {patch}")
    h, w = H // patch, W // patch
    if h > max_side or w > max_side:
        raise ImageSizeError(f"ViT input {W}x{H} exceeds {max_side} patches per side")
    x = pixels.reshape(c, h, patch, w, patch).permute(1, 3, 2, 4, 0).reshape(h * w, patch * patch * c)
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return x, (rows * max_side + cols).flatten()


def patchify(pixels: torch.Tensor, cfg: ViTConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """vit_patchify as the model with ViT config `cfg` sees an image (its view scale included)."""
    return vit_patchify(pixels, cfg.patch_size, cfg.max_patches_per_side, cfg.view_scale)


class ViTAttention(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        d = cfg.hidden_size
        self.heads = cfg.num_heads
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(d, d) for _ in range(4))

    def forward(self, x: torch.Tensor, segments: list) -> torch.Tensor:
        n, d = x.shape
        q, k, v = (p(x).view(n, self.heads, d // self.heads) for p in (self.q_proj, self.k_proj, self.v_proj))
        return self.out_proj(segment_attention(q, k, v, segments).reshape(n, d))


class ViTMLP(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.fc1 = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.fc2 = nn.Linear(cfg.intermediate_size, cfg.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class ViTLayer(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.self_attn = ViTAttention(cfg)
        self.layer_norm2 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.mlp = ViTMLP(cfg)

    def forward(self, x: torch.Tensor, segments: list) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x), segments)
        return x + self.mlp(self.layer_norm2(x))


class ViT(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.cfg = cfg
        self.patch_embedding = nn.Linear(cfg.patch_size ** 2 * 3, cfg.hidden_size)
        self.position_embedding = nn.Embedding(cfg.max_patches_per_side ** 2, cfg.hidden_size)
        self.layers = nn.ModuleList(ViTLayer(cfg) for _ in range(cfg.num_layers))
        self.post_layernorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, patches: torch.Tensor, pos_ids: torch.Tensor, seqlens: list[int]) -> torch.Tensor:
        """patches (N, p*p*3), pos_ids (N,), seqlens per image summing to N -> (N, hidden)."""
        x = self.patch_embedding(patches) + self.position_embedding(pos_ids)
        # images never attend to each other: one unmasked attention per image
        bounds = [0, *torch.tensor(seqlens).cumsum(0).tolist()]
        segments = [(a, b, None) for a, b in zip(bounds[:-1], bounds[1:])]
        for layer in self.layers:
            x = layer(x, segments)
        return self.post_layernorm(x)
