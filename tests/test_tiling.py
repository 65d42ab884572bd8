"""Tiled restoration: identity round trips, agreement with untiled processing away from
tile borders, no seams, exact output sizes and the grid alignment of every tile."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from uare.tiling import (
    TileConfig, axis_weights, num_tiles, pad_to_grid, process_tiled, restore_any_size, tile_starts,
)


def _photo(astronaut, h, w):
    x = torch.from_numpy(astronaut).permute(2, 0, 1).float() / 255.0
    return x[:, :h, :w].contiguous()


def test_tile_starts_are_on_the_grid_overlap_enough_and_cover_the_length():
    for length in (64, 160, 512, 1008, 2000 // 16 * 16):
        starts = tile_starts(length, 128, 32, 16)
        size = min(128, length)
        assert starts[0] == 0 and starts[-1] + size == length
        assert all(s % 16 == 0 for s in starts)
        assert all(b - a <= size - 32 + 16 for a, b in zip(starts, starts[1:]))  # overlap >= 32 - grid


def test_axis_weights_are_a_positive_partition_of_unity():
    starts = tile_starts(400, 128, 48, 16)
    ws = axis_weights(starts, 128, 400)
    total = torch.zeros(400)
    for s, w in zip(starts, ws):
        assert (w > 0).all()
        total[s:s + 128] += w
    assert torch.allclose(total, torch.ones(400), atol=1e-6)


def test_identity_model_round_trips_exactly_when_tiled(astronaut):
    x = _photo(astronaut, 300, 445)  # neither side on the grid
    calls = []

    def ident(t):
        calls.append(tuple(t.shape))
        return t

    out = restore_any_size(x, ident, TileConfig(tile=128, overlap=32, grid=16))
    assert out.shape == x.shape
    assert torch.allclose(out, x, atol=1e-6)
    assert len(calls) == num_tiles(300, 445, TileConfig(tile=128, overlap=32, grid=16)) > 1
    assert all(n == 1 and h % 16 == 0 and w % 16 == 0 and h <= 128 and w <= 128 for n, _, h, w in calls)


@pytest.mark.parametrize("batch", [2, 4, 100])
def test_batches_of_tiles_give_what_one_tile_at_a_time_gives(astronaut, batch):
    x = _photo(astronaut, 300, 445)
    cfg = TileConfig(tile=128, overlap=32, grid=16)
    calls, done = [], []

    def shade(t):   # a per-tile result that depends on the tile's content
        calls.append(t.shape[0])
        return t * t.mean(dim=(1, 2, 3), keepdim=True)

    one = restore_any_size(x, shade, cfg)
    n = len(calls)
    calls.clear()
    many = restore_any_size(x, shade, cfg, callback=lambda d, total: done.append((d, total)), batch=batch)
    assert torch.allclose(one, many, atol=1e-6, rtol=0)   # the same tiles and weights (sums may round apart)
    assert sum(calls) == n and len(calls) == -(-n // batch) and max(calls) <= batch
    assert max(calls) - min(calls) <= 3                  # even batches, no lone last tile
    assert done[-1] == (n, n)


def test_local_model_tiled_agrees_with_untiled_away_from_tile_borders(astronaut):
    x = _photo(astronaut, 256, 384)
    k = torch.full((3, 1, 5, 5), 1 / 25.0)

    def blur(t):  # a local operator with a 2-pixel reach; zero padding at its borders
        return F.conv2d(t, k, padding=2, groups=3)

    cfg = TileConfig(tile=128, overlap=48, grid=16)
    tiled = restore_any_size(x, blur, cfg)
    whole = blur(x[None])[0]
    # every pixel at least 3 px inside some tile whose weight dominates is exact; with
    # overlap 48, a pixel >= 3 px from every tile edge gets only exact contributions
    ys, xs = tile_starts(256, 128, 48, 16), tile_starts(384, 128, 48, 16)
    edge = torch.zeros(256, 384, dtype=torch.bool)
    for y in ys:
        for e in (y, y + 128):
            edge[max(e - 3, 0):e + 3, :] = True
    for x0 in xs:
        for e in (x0, x0 + 128):
            edge[:, max(e - 3, 0):e + 3] = True
    assert edge.float().mean() < 0.5
    diff = (tiled - whole).abs()
    assert diff[:, ~edge].max() < 1e-5
    assert diff[:, edge].max() > 1e-3  # the borders really do differ: the test can fail


def test_blending_leaves_no_seam_when_tiles_disagree():
    # each tile returns a constant that differs per tile: a hard cut would jump by the
    # full difference between neighbours at one column; the ramp spreads it over the overlap
    counter = iter(range(100))

    def per_tile_constant(t):
        return torch.full_like(t, float(next(counter)))

    cfg = TileConfig(tile=64, overlap=32, grid=16)
    out = process_tiled(torch.zeros(1, 64, 160), per_tile_constant, cfg)
    row = out[0, 32]
    starts = tile_starts(160, 64, 32, 16)
    assert len(starts) >= 3
    steps = (row[1:] - row[:-1]).abs()
    assert steps.max() < 1.0 / 16  # a jump of 1 spread over >= 16 pixels
    assert row[0] == pytest.approx(0.0) and row[-1] == pytest.approx(len(starts) - 1)


def test_pad_to_grid_keeps_the_image_in_the_top_left_and_handles_tiny_images():
    x = torch.rand(3, 21, 5)
    p = pad_to_grid(x, 16)
    assert p.shape == (3, 32, 16)
    assert torch.equal(p[:, :21, :5], x)
    assert pad_to_grid(torch.rand(3, 32, 48), 16).shape == (3, 32, 48)


def test_restore_any_size_returns_exact_size_for_a_size_changing_channel_count():
    out = restore_any_size(torch.rand(3, 37, 290), lambda t: t[:, :1] * 2, TileConfig(tile=64, overlap=16))
    assert out.shape == (1, 37, 290)


def test_bad_tile_settings_and_inputs_raise_value_error():
    with pytest.raises(ValueError):
        TileConfig(tile=100, grid=16)
    with pytest.raises(ValueError):
        TileConfig(tile=64, overlap=64)
    with pytest.raises(ValueError):
        process_tiled(torch.zeros(3, 20, 32), lambda t: t, TileConfig(tile=32, overlap=8))
    with pytest.raises(ValueError):
        process_tiled(torch.zeros(3, 64, 64), lambda t: t[..., :8], TileConfig(tile=32, overlap=8))
    with pytest.raises(ValueError):
        process_tiled(torch.zeros(3, 64, 64), lambda t: t[:1], TileConfig(tile=32, overlap=8), batch=2)
    with pytest.raises(ValueError):
        process_tiled(torch.zeros(3, 64, 64), lambda t: t, TileConfig(tile=32, overlap=8), batch=0)
