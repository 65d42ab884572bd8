"""Fixed 2D sin-cos position tables and the DiT-style timestep embedder (bagel-facts §2)."""
from __future__ import annotations

import math

import torch
from torch import nn


def sincos_1d(pos: torch.Tensor, dim: int) -> torch.Tensor:
    """pos (N,) -> (N, dim): [sin(pos*w), cos(pos*w)], w_k = 10000^(-k/(dim/2))."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))
    ang = pos.to(torch.float64)[:, None] * omega[None]
    return torch.cat([ang.sin(), ang.cos()], dim=1)


def sincos_2d(max_side: int, dim: int) -> torch.Tensor:
    """(max_side**2, dim) table indexed by row*max_side + col; first half encodes the column."""
    if dim % 4:
        raise ValueError(f"2D sin-cos table needs a width divisible by 4, got {dim}")
    rows, cols = torch.meshgrid(torch.arange(max_side), torch.arange(max_side), indexing="ij")
    table = torch.cat([sincos_1d(cols.flatten(), dim // 2), sincos_1d(rows.flatten(), dim // 2)], dim=1)
    return table.float()


class PositionEmbedding(nn.Module):
    """Fixed table, saved in checkpoints (Bagel stores it) but never trained."""

    def __init__(self, max_side: int, dim: int):
        super().__init__()
        self.max_side, self.dim = max_side, dim
        self.register_buffer("pos_embed", torch.zeros(max_side * max_side, dim))
        self.reset_table()

    def reset_table(self) -> None:
        if self.pos_embed.device.type != "meta":
            with torch.no_grad():
                self.pos_embed.copy_(sincos_2d(self.max_side, self.dim))

    def forward(self, pos_ids: torch.Tensor) -> torch.Tensor:
        return self.pos_embed[pos_ids]


class TimestepEmbedder(nn.Module):
    """t in [0, 1] (not x1000) -> [cos, sin] features -> MLP."""

    def __init__(self, dim: int, freq_dim: int = 256, max_period: float = 10000.0):
        super().__init__()
        self.freq_dim, self.max_period = freq_dim, max_period
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def features(self, t: torch.Tensor) -> torch.Tensor:
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(self.max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        ang = t.float()[:, None] * freqs[None]
        return torch.cat([ang.cos(), ang.sin()], dim=1)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """t (N,) -> (N, dim)."""
        f = self.features(t).to(self.mlp[0].weight.dtype)
        return self.mlp(f)
