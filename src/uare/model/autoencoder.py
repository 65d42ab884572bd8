"""FLUX-style convolutional autoencoder (module names match FLUX's ae.safetensors).

Pixels are in [-1, 1]. `encode` samples the posterior (mean + std * eps), as Bagel does in
training and inference, then applies z = scale * (z_raw - shift).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import AutoencoderConfig


def _norm(cfg: AutoencoderConfig, ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(cfg.num_groups, ch, eps=1e-6)


class ResnetBlock(nn.Module):
    def __init__(self, cfg: AutoencoderConfig, cin: int, cout: int):
        super().__init__()
        self.norm1, self.conv1 = _norm(cfg, cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2, self.conv2 = _norm(cfg, cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.nin_shortcut(x) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all pixels of the bottleneck."""

    def __init__(self, cfg: AutoencoderConfig, ch: int):
        super().__init__()
        self.norm = _norm(cfg, ch)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(ch, ch, 1) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        y = self.norm(x)
        q, k, v = (p(y).reshape(b, 1, c, h * w).transpose(2, 3) for p in (self.q, self.k, self.v))
        a = F.scaled_dot_product_attention(q, k, v).transpose(2, 3).reshape(b, c, h, w)
        return x + self.proj_out(a)


class Downsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))   # asymmetric pad, as in FLUX


class Upsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def _mid(cfg: AutoencoderConfig, ch: int) -> nn.Module:
    mid = nn.Module()
    mid.block_1 = ResnetBlock(cfg, ch, ch)
    mid.attn_1 = AttnBlock(cfg, ch) if cfg.mid_attention else nn.Identity()
    mid.block_2 = ResnetBlock(cfg, ch, ch)
    return mid


def _run_mid(mid: nn.Module, h: torch.Tensor) -> torch.Tensor:
    return mid.block_2(mid.attn_1(mid.block_1(h)))


class Encoder(nn.Module):
    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        self.conv_in = nn.Conv2d(cfg.in_channels, cfg.ch, 3, padding=1)
        self.down = nn.ModuleList()
        cin = cfg.ch
        for i, mult in enumerate(cfg.ch_mult):
            level = nn.Module()
            level.block = nn.ModuleList()
            for _ in range(cfg.num_res_blocks):
                level.block.append(ResnetBlock(cfg, cin, cfg.ch * mult))
                cin = cfg.ch * mult
            if i != len(cfg.ch_mult) - 1:
                level.downsample = Downsample(cin)
            self.down.append(level)
        self.mid = _mid(cfg, cin)
        self.norm_out = _norm(cfg, cin)
        self.conv_out = nn.Conv2d(cin, 2 * cfg.z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.down:
            for block in level.block:
                h = block(h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        h = _run_mid(self.mid, h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        cin = cfg.ch * cfg.ch_mult[-1]
        self.conv_in = nn.Conv2d(cfg.z_channels, cin, 3, padding=1)
        self.mid = _mid(cfg, cin)
        levels = []
        for i in reversed(range(len(cfg.ch_mult))):
            level = nn.Module()
            level.block = nn.ModuleList()
            for _ in range(cfg.num_res_blocks + 1):
                level.block.append(ResnetBlock(cfg, cin, cfg.ch * cfg.ch_mult[i]))
                cin = cfg.ch * cfg.ch_mult[i]
            if i != 0:
                level.upsample = Upsample(cin)
            levels.insert(0, level)
        self.up = nn.ModuleList(levels)   # up[0] is the full-resolution level, as in FLUX
        self.norm_out = _norm(cfg, cin)
        self.conv_out = nn.Conv2d(cin, cfg.in_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = _run_mid(self.mid, self.conv_in(z))
        for level in reversed(self.up):
            for block in level.block:
                h = block(h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Autoencoder(nn.Module):
    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)

    def encode(self, x: torch.Tensor, sample: bool = True, generator: torch.Generator | None = None) -> torch.Tensor:
        """x (B, 3, H, W) in [-1, 1], H and W multiples of the downsampling -> (B, z, H/f, W/f)."""
        f = self.cfg.downsample
        if x.shape[-1] % f or x.shape[-2] % f:
            raise ValueError(f"autoencoder input {x.shape[-1]}x{x.shape[-2]} is not a multiple of {f}")
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        z = mean
        if sample:
            std = torch.exp(0.5 * logvar.clamp(-30.0, 20.0))
            z = mean + std * torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return self.cfg.scale_factor * (z - self.cfg.shift_factor)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, z, h, w) scaled latents -> (B, 3, h*f, w*f) in about [-1, 1]."""
        return self.decoder(z / self.cfg.scale_factor + self.cfg.shift_factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))
