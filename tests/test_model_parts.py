"""Image-side parts, position tables, timestep embedder and the flow losses."""
import math

import pytest
import torch

from model_helpers import micro_config
from uare import losses
from uare.model.autoencoder import Autoencoder
from uare.model.embeddings import TimestepEmbedder, sincos_2d
from uare.model.vit import vit_patchify
from uare.sequence import VaeImage, build_packed, SpecialIds


def test_vit_patchify_pixel_order_and_position_ids():
    px = torch.arange(3 * 4 * 6, dtype=torch.float32).reshape(3, 4, 6)
    patches, pos = vit_patchify(px, 2, max_side=10)
    assert patches.shape == (6, 12)
    assert pos.tolist() == [0, 1, 2, 10, 11, 12]
    # patch (row 1, col 2): first pixel (2, 4), channels fastest, then column, then row
    want = torch.stack([px[:, 2, 4], px[:, 2, 5], px[:, 3, 4], px[:, 3, 5]]).flatten()
    assert torch.equal(patches[5], want)


def test_vit_patchify_view_scale_is_a_finer_patch_on_repeated_pixels():
    px = torch.randn(3, 4, 6)
    patches, pos = vit_patchify(px, 4, max_side=10, view_scale=2)
    assert patches.shape == (6, 48)           # 2x2-pixel patches of the image, each shown 2x2
    assert pos.tolist() == [0, 1, 2, 10, 11, 12]
    fine, _ = vit_patchify(px, 2, max_side=10)
    # every value of the 4x4 patch of the up-sampled view comes from its 2x2 image patch
    view = patches.view(6, 2, 2, 2, 2, 3)     # (patch, row, row copy, col, col copy, channel)
    assert torch.equal(view[:, :, 0, :, 0].reshape(6, 12), fine)
    assert torch.equal(view[:, :, 1, :, 1].reshape(6, 12), fine)

def test_sincos_table_first_half_is_column_second_half_row():
    t = sincos_2d(4, 8)
    assert t.shape == (16, 8)
    # id 1 = (row 0, col 1): column half [sin(1), sin(1/100), cos(1), cos(1/100)], row half of 0
    torch.testing.assert_close(t[1, :4], torch.tensor([math.sin(1), math.sin(0.01), math.cos(1), math.cos(0.01)]))
    torch.testing.assert_close(t[1, 4:], torch.tensor([0.0, 0.0, 1.0, 1.0]))
    torch.testing.assert_close(t[4, 4:], t[1, :4])      # id 4 = row 1, col 0


def test_timestep_features_are_cos_then_sin_of_unscaled_t():
    f = TimestepEmbedder(8).features(torch.tensor([0.0, 0.5]))
    assert f.shape == (2, 256)
    assert torch.all(f[0, :128] == 1) and torch.all(f[0, 128:] == 0)
    assert math.isclose(f[1, 0].item(), math.cos(0.5), rel_tol=1e-6)


def test_autoencoder_downsamples_by_config_and_samples_the_posterior():
    cfg = micro_config().vae
    ae = Autoencoder(cfg)
    x = torch.rand(1, 3, 16, 24) * 2 - 1
    g = torch.Generator().manual_seed(0)
    z1, z2 = ae.encode(x, generator=g), ae.encode(x, generator=g)
    assert z1.shape == (1, 16, 8, 12)
    assert not torch.equal(z1, z2)
    assert torch.equal(ae.encode(x, sample=False), ae.encode(x, sample=False))
    assert ae.decode(z1).shape == x.shape
    with pytest.raises(ValueError, match="multiple of 2"):
        ae.encode(torch.zeros(1, 3, 15, 16))


def test_autoencoder_applies_scale_and_shift():
    cfg = micro_config().vae
    cfg.scale_factor, cfg.shift_factor = 0.5, 0.25
    ae = Autoencoder(cfg)
    x = torch.rand(1, 3, 8, 8)
    raw = ae.encoder(x).chunk(2, dim=1)[0]
    torch.testing.assert_close(ae.encode(x, sample=False), 0.5 * (raw - 0.25))


def test_shift_timesteps_formula_and_direction():
    t = torch.tensor([0.0, 0.25, 0.5, 1.0])
    torch.testing.assert_close(losses.shift_timesteps(t, 3.0), 3 * t / (1 + 2 * t))
    g = torch.Generator().manual_seed(0)
    assert losses.sample_timesteps(4000, 4.0, g).mean() > losses.sample_timesteps(4000, 1.0, g).mean() + 0.2


def test_flow_noise_interpolates_noisy_latents_and_keeps_clean_ones():
    cfg = micro_config()
    sp = SpecialIds(0, 1, 2, 3)
    clean, target = torch.randn(16, 4, 4), torch.randn(16, 4, 4)
    p = build_packed([[VaeImage(clean), VaeImage(target, noisy=True)]], cfg, sp)
    q = losses.add_flow_noise(p, 4.0, torch.Generator().manual_seed(1))
    assert torch.equal(q.vae_tokens[:4], p.vae_tokens[:4]) and torch.all(q.vae_timesteps[:4] == 0)
    t = q.vae_timesteps[4:]
    assert torch.all(t == t[0]) and 0 < t[0] < 1           # one t per image
    x0, xt = p.vae_tokens[4:], q.vae_tokens[4:]
    eps = (xt - (1 - t[0]) * x0) / t[0]
    torch.testing.assert_close(q.flow_target, eps - x0, atol=1e-4, rtol=1e-4)


def test_losses_weight_and_reduce_per_token():
    from types import SimpleNamespace

    cfg = micro_config()
    p = build_packed([[VaeImage(torch.zeros(16, 4, 4), noisy=True)]], cfg, SpecialIds(0, 1, 2, 3))
    p.flow_target = torch.ones(4, 64)
    out = SimpleNamespace(logits=torch.zeros(0, 300), velocity=torch.zeros(4, 64, requires_grad=True))
    res = losses.compute_losses(out, p, ce_weight=0.25, mse_weight=2.0)
    assert res.mse.item() == 1.0 and res.ce.item() == 0.0 and res.total.item() == 2.0
    assert losses.compute_losses(out, p, num_mse=8).mse.item() == 0.5
