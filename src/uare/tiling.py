"""Restoring images of any size with a model that takes a bounded size.

The model sees sizes that are multiples of the latent grid (16 pixels per latent token)
and at most `tile` pixels a side. An image is padded up to the grid (reflection, so the
border content continues naturally), cut into overlapping tiles if it is too large,
each tile restored on its own, and the tiles blended back with weights that ramp across
each overlap. The ramps form a partition of unity along each axis, so an identity model
gives back the input exactly and neighbouring tiles fade into each other without a seam.
All tiles of an image have one size, so the model takes them `batch` at a time (one
forward for many tiles: small matrix products waste a CPU, one tile leaves a GPU idle);
the canvas holds the input and the output.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F

# (N, C, h, w) -> (N, C_out, h, w): N tiles of one size at once
TileFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TileConfig:
    """tile: largest side the model takes (pixels); overlap: pixels shared by neighbours;
    grid: every size handed to the model is a multiple of it."""
    tile: int = 1024
    overlap: int = 128
    grid: int = 16

    def __post_init__(self):
        if self.grid < 1 or self.tile < self.grid or self.tile % self.grid:
            raise ValueError(f"tile ({self.tile}) must be a positive multiple of grid ({self.grid})")
        if not 0 <= self.overlap < self.tile:
            raise ValueError(f"overlap must be in [0, tile), got {self.overlap} for tile {self.tile}")


def round_up(n: int, multiple: int) -> int:
    return int(math.ceil(n / multiple) * multiple)


def pad_to_grid(x: torch.Tensor, grid: int) -> torch.Tensor:
    """(C, H, W) -> (C, H', W') with H', W' the next multiples of grid (>= grid).

    Pads at the bottom/right by reflection, or by replication where the image is too
    small to reflect; the original sits at [:, :H, :W].
    """
    _, h, w = x.shape
    ph, pw = round_up(max(h, 1), grid) - h, round_up(max(w, 1), grid) - w
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x[None], (0, pw, 0, ph), mode=mode)[0]


def tile_starts(length: int, tile: int, overlap: int, grid: int) -> list[int]:
    """Start offsets of tiles of size min(tile, length) covering [0, length).

    Starts are multiples of grid, spread evenly so each overlap is about `overlap` or
    more; the last tile ends exactly at `length` (a multiple of grid).
    """
    size = min(tile, length)
    if size == length:
        return [0]
    n = max(2, math.ceil((length - overlap) / (size - overlap)))
    span = (length - size) / grid
    return sorted({int(round(span * k / (n - 1))) * grid for k in range(n)})


def axis_weights(starts: list[int], size: int, length: int) -> list[torch.Tensor]:
    """One (size,) weight ramp per tile; at every pixel the weights sum to 1.

    Each tile's weight rises linearly across its overlap with the previous tile and
    falls across its overlap with the next; elsewhere it is 1 before normalising.
    """
    raw = []
    for k, s in enumerate(starts):
        w = torch.ones(size, dtype=torch.float64)
        idx = torch.arange(size, dtype=torch.float64) + 0.5
        if k > 0:
            ov = starts[k - 1] + size - s
            if ov > 0:
                w = torch.minimum(w, idx / ov)
        if k + 1 < len(starts):
            ov = s + size - starts[k + 1]
            if ov > 0:
                w = torch.minimum(w, (size - idx) / ov)
        raw.append(w)
    total = torch.zeros(length, dtype=torch.float64)
    for s, w in zip(starts, raw):
        total[s:s + size] += w
    return [(w / total[s:s + size]).float() for s, w in zip(starts, raw)]


def process_tiled(x: torch.Tensor, fn: TileFn, cfg: TileConfig,
                  callback: Optional[Callable[[int, int], None]] = None, batch: int = 1) -> torch.Tensor:
    """Apply fn to the tiles of a grid-aligned (C, H, W) canvas, `batch` tiles a call, and
    blend the results.

    fn maps (N, C, h, w) -> (N, C_out, h, w) for N <= batch and h, w <= cfg.tile multiples
    of cfg.grid. Returns (C_out, H, W) float32. `callback(done, total)` follows the tiles.
    """
    if batch < 1:
        raise ValueError(f"tile batch must be at least 1, got {batch}")
    _, h, w = x.shape
    if h % cfg.grid or w % cfg.grid:
        raise ValueError(f"canvas {w}x{h} is not a multiple of the grid {cfg.grid}; pad it first")
    th, tw = min(cfg.tile, h), min(cfg.tile, w)
    ys = tile_starts(h, cfg.tile, cfg.overlap, cfg.grid)
    xs = tile_starts(w, cfg.tile, cfg.overlap, cfg.grid)
    wy, wx = axis_weights(ys, th, h), axis_weights(xs, tw, w)
    places = [(i, j) for i in range(len(ys)) for j in range(len(xs))]
    # as few calls as `batch` allows, of even sizes (25 tiles by 8: 7, 7, 7, 4, not 8, 8, 8, 1)
    calls = -(-len(places) // batch)
    size = -(-len(places) // calls)
    out: Optional[torch.Tensor] = None
    for k in range(0, len(places), size):
        group = places[k:k + size]
        tiles = fn(torch.stack([x[:, ys[i]:ys[i] + th, xs[j]:xs[j] + tw] for i, j in group])).float()
        if tiles.shape[0] != len(group) or tiles.shape[-2:] != (th, tw):
            raise ValueError(f"tile function returned {tuple(tiles.shape)} for {len(group)} tiles of {tw}x{th}")
        if out is None:
            out = torch.zeros((tiles.shape[1], h, w), dtype=torch.float32)
        for (i, j), tile in zip(group, tiles):
            out[:, ys[i]:ys[i] + th, xs[j]:xs[j] + tw] += tile * (wy[i][:, None] * wx[j][None, :])
        if callback is not None:
            callback(k + len(group), len(places))
    assert out is not None  # at least one tile always exists
    return out


def restore_any_size(x: torch.Tensor, fn: TileFn, cfg: TileConfig,
                     callback: Optional[Callable[[int, int], None]] = None, batch: int = 1) -> torch.Tensor:
    """(C, H, W) of any size -> fn's output at exactly (C_out, H, W).

    Pads to the grid, runs fn once on the padded canvas if it fits in one tile and on
    batches of tiles otherwise, then crops the padding away.
    """
    _, h, w = x.shape
    canvas = pad_to_grid(x, cfg.grid)
    if max(canvas.shape[-2:]) <= cfg.tile:
        out = fn(canvas[None])[0].float()
        if callback is not None:
            callback(1, 1)
    else:
        out = process_tiled(canvas, fn, cfg, callback, batch)
    return out[:, :h, :w]


def num_tiles(height: int, width: int, cfg: TileConfig) -> int:
    """How many model calls restore_any_size makes for an image of this size."""
    h, w = round_up(max(height, 1), cfg.grid), round_up(max(width, 1), cfg.grid)
    if max(h, w) <= cfg.tile:
        return 1
    return len(tile_starts(h, cfg.tile, cfg.overlap, cfg.grid)) * len(tile_starts(w, cfg.tile, cfg.overlap, cfg.grid))
