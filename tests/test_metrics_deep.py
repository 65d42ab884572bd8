"""LPIPS / DISTS networks on random weights: architecture, properties and weight loading."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from uare import metrics
from uare.metrics import weights
from uare.metrics.backbones import Backbone, L2Pool
from uare.metrics.dists_net import DISTS
from uare.metrics.lpips_net import LPIPS
from script_helpers import load_script


@pytest.fixture
def images():
    g = torch.Generator().manual_seed(0)
    return torch.rand(2, 3, 64, 64, generator=g), torch.rand(2, 3, 64, 64, generator=g)


@pytest.mark.parametrize("net,channels,sizes", [
    ("alex", (64, 192, 384, 256, 256), (15, 7, 3, 3, 3)),
    ("vgg", (64, 128, 256, 512, 512), (64, 32, 16, 8, 4)),
])
def test_backbone_taps_have_torchvision_channel_counts_and_sizes(net, channels, sizes):
    feats = Backbone(net)(torch.rand(1, 3, 64, 64))
    assert [f.shape[1] for f in feats] == list(channels)
    assert [f.shape[2] for f in feats] == list(sizes)


def test_l2pool_halves_and_keeps_a_constant_inside_the_border():
    out = L2Pool(4)(torch.full((1, 4, 16, 16), 3.0))
    assert out.shape == (1, 4, 8, 8)
    assert torch.allclose(out[..., 1:, 1:], torch.tensor(3.0))


def _positive_heads(model: LPIPS) -> LPIPS:
    for p in model.heads.parameters():  # real LPIPS heads are non-negative
        p.data.abs_()
    return model


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_is_zero_for_identical_symmetric_and_positive_otherwise(net, images):
    torch.manual_seed(0)
    model = _positive_heads(LPIPS(net))
    x, y = images
    with torch.no_grad():
        d_xy, d_yx = model(x, y), model(y, x)
        assert torch.allclose(model(x, x), torch.zeros(2))
        assert torch.allclose(d_xy, d_yx, rtol=1e-5)
        assert (d_xy > 0).all()
        assert torch.allclose(model(x[:1], y[:1]), d_xy[:1], rtol=1e-5)


def test_dists_is_zero_for_identical_and_symmetric(images):
    torch.manual_seed(0)
    model = DISTS()
    x, y = images
    with torch.no_grad():
        d_xy = model(x, y)
        assert torch.allclose(model(x, x), torch.zeros(2), atol=1e-5)
        assert torch.allclose(d_xy, model(y, x), atol=1e-6)
        assert (d_xy > 1e-3).all()


def _write(path, module_state: dict, prefix: str = "") -> None:
    save_file({prefix + k: v.contiguous() for k, v in module_state.items()}, str(path))


def test_lpips_loads_safetensors_from_a_folder_and_matches_the_module(tmp_path, images):
    torch.manual_seed(1)
    ref_model = _positive_heads(LPIPS("alex"))
    _write(tmp_path / weights.FILES["alexnet"], ref_model.net.features.state_dict(), "features.")
    _write(tmp_path / weights.FILES["lpips_alex"], ref_model.heads.state_dict())
    x, y = images
    metric = metrics.create_metric("lpips", weights=str(tmp_path))
    assert (metric.name, metric.mode, metric.lower_better) == ("lpips", "FR", True)
    got = metric(x, y)
    with torch.no_grad():
        assert np.allclose(got, ref_model(x, y).numpy(), rtol=1e-5)
    assert metrics.lpips(x[0], x[0], weights=str(tmp_path)) == pytest.approx(0.0, abs=1e-7)


def test_dists_loads_safetensors_and_rejects_misfit_files(tmp_path, images):
    torch.manual_seed(2)
    ref_model = DISTS()
    ref_model.alpha.data.uniform_(0, 1)
    _write(tmp_path / weights.FILES["vgg16"], ref_model.features.state_dict(), "features.")
    _write(tmp_path / weights.FILES["dists"], {"alpha": ref_model.alpha.data, "beta": ref_model.beta.data})
    x, y = images
    with torch.no_grad():
        assert np.allclose(metrics.dists(x, y, weights=tmp_path), ref_model(x, y).numpy(), atol=1e-6)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / weights.FILES["vgg16"]).symlink_to(tmp_path / weights.FILES["vgg16"])
    _write(bad / weights.FILES["dists"], {"alpha": torch.ones(1, 10, 1, 1), "beta": torch.ones(1, 10, 1, 1)})
    with pytest.raises(ValueError, match="dists_alpha_beta.safetensors.*shape"):
        metrics.dists(x, y, weights=bad)


def test_missing_weights_give_an_error_naming_files_and_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("UARE_WEIGHTS_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match=r"vgg16\.safetensors.*dists_alpha_beta\.safetensors.*convert_metric_weights"):
        metrics.create_metric("dists")
    with pytest.raises(weights.WeightsNotFoundError, match=str(tmp_path / "nowhere")):
        metrics.create_metric("lpips-vgg", weights=str(tmp_path / "nowhere"))


def test_conversion_script_writes_the_file_names_the_loader_expects():
    # defines functions only; torchvision is imported lazily
    script = load_script("scripts/convert_metric_weights.py")
    assert script.FILES == weights.FILES
