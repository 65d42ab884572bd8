"""Latent <-> token reshapes and latent position ids (bagel-facts §2)."""
from __future__ import annotations

import torch

from .vit import ImageSizeError


def latents_to_tokens(latent: torch.Tensor, p: int = 2) -> torch.Tensor:
    """(C, p*h, p*w) -> (h*w, p*p*C), or (B, C, p*h, p*w) -> (B, h*w, p*p*C); within a
    token the order is (row, col, channel)."""
    *b, c, H, W = latent.shape
    if H % p or W % p:
        raise ImageSizeError(f"latent {W}x{H} is not a multiple of the latent patch size {p}")
    h, w = H // p, W // p
    x = latent.reshape(-1, c, h, p, w, p).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(*b, h * w, p * p * c)


def tokens_to_latents(tokens: torch.Tensor, h: int, w: int, p: int = 2) -> torch.Tensor:
    """(h*w, p*p*C) -> (C, p*h, p*w), or with a leading batch dim; inverse of latents_to_tokens."""
    *b, _, d = tokens.shape
    c = d // (p * p)
    x = tokens.reshape(-1, h, w, p, p, c).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(*b, c, h * p, w * p)


def latent_pos_ids(h: int, w: int, max_side: int) -> torch.Tensor:
    """(h*w,) ids row*max_side + col into the latent sin-cos table."""
    if h > max_side or w > max_side:
        raise ImageSizeError(f"latent grid {w}x{h} tokens exceeds max_latent_size {max_side}")
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return (rows * max_side + cols).flatten()
