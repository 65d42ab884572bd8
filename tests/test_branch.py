"""Pixel branches (uare.model.branch): the file round-trips through safetensors with its
configs, a broken one is named, and the pipeline hands a restoration to a branch exactly
where it removes that branch's type alone (by task, by name, or by the analysis)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from uare import pipeline
from uare.cli import main
from uare.model.branch import FILENAME, Branch, BranchConfig, load_branches, save_branches, self_ensemble
from uare.pipeline import UARE

from test_pipeline import _photo, plain_and_extended


def _branch(kind="jpeg", seed=1, **cfg):
    torch.manual_seed(seed)
    return Branch(BranchConfig(kind, **{"channels": 8, "layers": 3, **cfg})).eval()


def test_a_branch_adds_its_correction_to_the_input_at_any_size():
    b = _branch()
    x = torch.rand(2, 3, 15, 22)
    with torch.no_grad():
        y = b(x)
        assert y.shape == x.shape and not torch.equal(y, x)
        torch.nn.init.zeros_(b.convs[-1].weight)
        torch.nn.init.zeros_(b.convs[-1].bias)
        assert torch.equal(b(x), x)       # a zero last layer: the input, untouched
    with pytest.raises(ValueError, match="branch config"):
        BranchConfig("jpeg", layers=1)


def test_branches_round_trip_in_one_file_and_a_folder_without_has_none(tmp_path):
    both = {"jpeg": _branch("jpeg", 1), "raindrop": _branch("raindrop", 2, layers=4)}
    save_branches(both, tmp_path)
    back = load_branches(tmp_path)
    assert set(back) == {"jpeg", "raindrop"} and back["raindrop"].cfg.layers == 4
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        for k in both:
            assert torch.equal(back[k](x), both[k](x))
    assert not any(p.requires_grad for b in back.values() for p in b.parameters())
    assert load_branches(tmp_path / "nowhere") == {}


def test_a_residual_branch_starts_as_the_identity_and_round_trips(tmp_path):
    b = _branch("noise", layers=6, residual=True)
    x = torch.rand(2, 3, 15, 22)
    with torch.no_grad():
        assert torch.equal(b(x), x)      # zero last layer
        for conv in b.convs:
            conv.weight.add_(0.05 * torch.randn_like(conv.weight))
        y = b(x)
    assert not torch.equal(y, x)
    save_branches({"noise": b, "jpeg": _branch()}, tmp_path)
    back = load_branches(tmp_path)
    assert back["noise"].cfg.residual and not back["jpeg"].cfg.residual
    with torch.no_grad():
        assert torch.equal(back["noise"](x), y)
    with pytest.raises(ValueError, match="even number of layers"):
        BranchConfig("noise", layers=5, residual=True)


def test_branches_stored_in_half_precision_load_as_float32_and_restore_alike(tmp_path):
    b = _branch("noise", channels=16, layers=4)
    full = save_branches({"noise": b}, tmp_path / "full")
    half = save_branches({"noise": b}, tmp_path / "half", dtype=torch.float16)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    back = load_branches(tmp_path / "half")["noise"]
    assert all(p.dtype == torch.float32 for p in back.parameters())
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        diff = (back(x) - b(x)).abs().max().item()
    assert 0 < diff < 1e-3   # rounded weights: changed, by far less than a grey level (1/255)


def test_a_broken_branch_file_is_named(tmp_path):
    (tmp_path / FILENAME).write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match=FILENAME):
        load_branches(tmp_path)
    save_file({"jpeg.convs.0.weight": torch.zeros(1)}, str(tmp_path / FILENAME))
    with pytest.raises(ValueError, match="no branch configs"):
        load_branches(tmp_path)
    meta = {"branches": json.dumps({"jpeg": {"type": "jpeg", "channels": 8, "layers": 3, "scale": 2}})}
    save_file({"jpeg.convs.0.weight": torch.zeros(1)}, str(tmp_path / FILENAME), metadata=meta)
    with pytest.raises(ValueError, match="do not fit"):
        load_branches(tmp_path)
    meta = {"branches": json.dumps({"jpeg": {"type": "noise", "channels": 8, "layers": 3, "scale": 2}})}
    save_file({"jpeg.convs.0.weight": torch.zeros(1)}, str(tmp_path / FILENAME), metadata=meta)
    with pytest.raises(ValueError, match="says it removes 'noise'"):
        load_branches(tmp_path)


def _dihedral_mean(fn, x, group):
    """The mean of fn over the given (rotations, flip) pairs, each undone: the ensemble
    written out with rot90, independently of self_ensemble's flips and transposes."""
    outs = []
    for k, flip in group:
        y = torch.rot90(x, k, (-2, -1))
        y = fn(y.flip(-1) if flip else y)
        y = y.flip(-1) if flip else y
        outs.append(torch.rot90(y, -k, (-2, -1)))
    return torch.stack(outs).mean(0)


@pytest.mark.parametrize("n, group", [
    (1, [(0, False)]),
    (2, [(0, False), (0, True)]),
    (4, [(0, False), (0, True), (2, False), (2, True)]),   # both flips: rot180 = the two together
    (8, [(k, f) for k in range(4) for f in (False, True)]),
])
def test_self_ensemble_is_the_mean_over_the_flips_and_rotations_undone(n, group):
    torch.manual_seed(0)
    x = torch.rand(2, 3, 5, 7)   # not square: a transposed view must come back to 5 x 7
    # no symmetry at all: depends on the position and on the order along both axes
    fn = lambda y: y.cumsum(-1) * 0.5 + y.cumsum(-2) ** 2 + torch.arange(y.shape[-1]) * 0.1
    out = self_ensemble(fn, x, n)
    assert out.shape == x.shape
    assert torch.allclose(out, _dihedral_mean(fn, x, group), atol=1e-5)
    if n > 1:
        assert not torch.allclose(out, fn(x), atol=1e-3)
    assert torch.allclose(self_ensemble(lambda y: y * 3, x, n), x * 3)   # a pointwise map is left as it is


@pytest.mark.parametrize("bad", [0, 3, 16, "x", True, 2.5])
def test_self_ensemble_sizes_outside_1_2_4_8_are_refused(bad):
    with pytest.raises(ValueError, match="must be one of 1, 2, 4, 8"):
        self_ensemble(lambda y: y, torch.zeros(1, 3, 4, 4), bad)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """The same small model without and with a JPEG branch in its folder."""
    return plain_and_extended(tmp_path_factory, lambda d: save_branches({"jpeg": _branch()}, d))


def _branch_output(pipe, img: Image.Image) -> np.ndarray:
    """The JPEG branch on the image, as the pipeline returns it (the test model has no colour fix)."""
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
    with torch.no_grad():
        y = pipe.branches["jpeg"](x).clamp(0, 1)[0]
    return (y.permute(1, 2, 0).numpy() * 255.0 + 0.5).astype("uint8")


def _no_sampling(pipe, monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("sampled, where the branch should have restored")
    monkeypatch.setattr(pipe, "_restored_latents", refuse)


def test_dejpeg_is_the_branchs_output_and_nothing_is_sampled(pair, astronaut, monkeypatch):
    plain, branched = pair
    img = _photo(astronaut, 40, 56)
    assert plain.branches == {} and set(branched.branches) == {"jpeg"}
    sampled = branched.restore(img, task="dejpeg", branch=False)
    assert sampled.branch is None
    assert np.array_equal(np.asarray(sampled.image), np.asarray(plain.restore(img, task="dejpeg").image))
    _no_sampling(branched, monkeypatch)
    ticks = []
    for kwargs in ({"task": "dejpeg"}, {"task": "auto", "types": ["jpeg"]}, {"task": "mixed", "types": ["jpeg"]}):
        r = branched.restore(img, progress=lambda d, n: ticks.append((d, n)), **kwargs)
        assert r.branch == "jpeg" and r.task == "dejpeg" if kwargs["task"] != "mixed" else r.branch == "jpeg"
        assert np.array_equal(np.asarray(r.image), _branch_output(branched, img))
    assert ticks and ticks[-1][0] == ticks[-1][1]   # a progress bar still ends full
    with pytest.raises(ValueError, match="has no pixel branches"):
        plain.restore(img, task="dejpeg", branch=True)


def test_a_denoise_branch_output_is_not_shrunk_by_the_samplers_noise_share(pair, astronaut, monkeypatch):
    _, branched = pair
    cfg = pipeline.replace(branched.config, branch=["denoise"], mix={"denoise": "auto"})
    pipe = UARE(branched.model, cfg, None, {"noise": _branch("noise", 3)})
    img = _photo(astronaut, 40, 56)
    sampled = pipe.restore(img, task="denoise", branch=False)
    assert sampled.branch is None and sampled.mix < 1.0   # the share rule, for the sampler
    _no_sampling(pipe, monkeypatch)
    r = pipe.restore(img, task="denoise")
    assert r.branch == "noise" and r.mix == 1.0
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
    with torch.no_grad():
        y = pipe.branches["noise"](x).clamp(0, 1)[0]
    assert np.array_equal(np.asarray(r.image), (y.permute(1, 2, 0).numpy() * 255.0 + 0.5).astype("uint8"))


def test_a_branch_runs_as_a_self_ensemble_by_its_type_or_as_restore_asks(pair, astronaut, monkeypatch):
    _, branched = pair
    noise, jpeg = _branch("noise", 3), branched.branches["jpeg"]
    cfg = pipeline.replace(branched.config, branch=True, branch_ensemble={"noise": 8})
    pipe = UARE(branched.model, cfg, None, {"noise": noise, "jpeg": jpeg})
    _no_sampling(pipe, monkeypatch)
    img = _photo(astronaut, 40, 56)
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]

    def expected(b, n):
        with torch.no_grad():
            y = self_ensemble(b, x, n).clamp(0, 1)[0]
        return (y.permute(1, 2, 0).numpy() * 255.0 + 0.5).astype("uint8")

    out = lambda **kw: np.asarray(pipe.restore(img, **kw).image)
    assert np.array_equal(out(task="denoise"), expected(noise, 8))
    assert not np.array_equal(expected(noise, 8), expected(noise, 1))   # the setting matters here
    assert np.array_equal(out(task="denoise", ensemble=2), expected(noise, 2))
    ticks = []
    pipe.restore(img, task="denoise", progress=lambda d, n: ticks.append((d, n)))
    assert ticks == [(k, 8) for k in range(1, 9)]     # a bar that moves with each pass
    assert np.array_equal(out(task="dejpeg"), expected(jpeg, 1))        # not listed, no default: one pass
    default = UARE(branched.model, pipeline.replace(cfg, branch_ensemble={"default": 4}), None, pipe.branches)
    assert np.array_equal(np.asarray(default.restore(img, task="dejpeg").image), expected(jpeg, 4))
    with pytest.raises(ValueError, match="ensemble must be one of"):
        pipe.restore(img, task="denoise", ensemble=5)
    for bad, why in (({"noise": 3}, r"branch_ensemble\[noise\] must be one of"), ({"nois": 8}, "unknown degradation types"),
                     (6, "branch_ensemble must be one of")):
        with pytest.raises(ValueError, match=why):
            UARE(branched.model, pipeline.replace(cfg, branch_ensemble=bad), None, pipe.branches)


def test_restorations_that_remove_other_or_more_types_are_sampled(pair, astronaut):
    plain, branched = pair
    img = _photo(astronaut, 40, 56)
    for kwargs in ({"task": "deblur"}, {"task": "mixed", "types": ["blur", "jpeg"]},
                   {"task": "auto", "types": ["noise", "jpeg"]}, {"task": "sr"}):
        a, b = plain.restore(img, **kwargs), branched.restore(img, **kwargs)
        assert b.branch is None and np.array_equal(np.asarray(a.image), np.asarray(b.image)), kwargs


def test_the_branch_setting_picks_the_tasks(pair, astronaut):
    _, branched = pair
    img = _photo(astronaut, 40, 56)
    off = UARE(branched.model, pipeline.replace(branched.config, branch=["denoise"]), None, branched.branches)
    assert off.restore(img, task="dejpeg").branch is None
    assert off.restore(img, task="dejpeg", branch=True).branch == "jpeg"
    with pytest.raises(ValueError, match="unknown tasks"):
        UARE(branched.model, pipeline.replace(branched.config, branch=["nope"]), None, branched.branches)


@pytest.mark.parametrize("size", [(40, 56), (40, 150)], ids=["one canvas", "tiled"])
def test_an_analysis_that_names_jpeg_alone_hands_over_to_the_branch(pair, astronaut, monkeypatch, size):
    _, branched = pair
    img = _photo(astronaut, *size)
    analysis = "The image shows JPEG blocking artifacts. Remove the JPEG blocking artifacts."
    monkeypatch.setattr(branched, "_generate", lambda *a, **k: analysis)
    ticks = []
    r = branched.restore(img, analyze=True, steps=2, progress=lambda d, n: ticks.append((d, n)))
    assert r.branch == "jpeg" and r.text == analysis
    assert ticks[-1][0] == ticks[-1][1] and all(d <= n for d, n in ticks)   # ends full, never past it
    assert np.array_equal(np.asarray(r.image), _branch_output(branched, img))
    monkeypatch.setattr(branched, "_generate", lambda *a, **k: "The image shows JPEG artifacts and noise.")
    assert branched.restore(img, analyze=True, steps=2).branch is None


def test_large_images_go_through_the_branch_in_tiles_of_the_exact_size(pair, astronaut, monkeypatch):
    _, branched = pair
    monkeypatch.setattr(pipeline, "BRANCH_TILES", pipeline.TileConfig(tile=64, overlap=16, grid=16))
    seen = []
    real = branched.branches["jpeg"].forward
    monkeypatch.setattr(branched.branches["jpeg"], "forward", lambda x: seen.append(tuple(x.shape)) or real(x))
    img = _photo(astronaut, 70, 150)
    ticks = []
    r = branched.restore(img, task="dejpeg", ensemble=2, progress=lambda d, n: ticks.append((d, n)))
    assert r.image.size == (150, 70) and len(seen) > 1 and all(s[-1] <= 64 and s[-2] <= 64 for s in seen)
    assert ticks == [(k, len(seen)) for k in range(1, len(seen) + 1)]   # each pass over each tile
    seen.clear()
    r = branched.restore(img, task="dejpeg")
    whole = _branch_output(branched, img).astype(int)
    # tiles agree with the whole image away from their borders (3 convolutions at half size: 6 px)
    assert np.abs(np.asarray(r.image).astype(int) - whole)[8:-8, 8:-8].mean() < 1.0


def test_restore_command_branch_option_and_json(pair, tmp_path, capsys, astronaut):
    plain, branched = pair
    src = tmp_path / "in.png"
    Image.fromarray(_photo(astronaut, 40, 56)).save(src)
    assert main(["restore", str(src), "-o", str(tmp_path / "a.png"), "--task", "dejpeg", "--model",
                 str(branched.folder), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["branch"] == "jpeg"
    assert main(["restore", str(src), "-o", str(tmp_path / "b.png"), "--task", "dejpeg", "--model",
                 str(branched.folder), "--branch", "off", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["branch"] is None
    assert main(["restore", str(src), "-o", str(tmp_path / "c.png"), "--model", str(plain.folder),
                 "--branch", "on"]) == 2
    assert "no pixel branches" in capsys.readouterr().err and not (tmp_path / "c.png").exists()
    assert main(["restore", str(src), "-o", str(tmp_path / "d.png"), "--task", "dejpeg", "--model",
                 str(branched.folder), "--ensemble", "4", "--json"]) == 0
    x = torch.from_numpy(np.asarray(Image.open(src), dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
    with torch.no_grad():
        y = self_ensemble(branched.branches["jpeg"], x, 4).clamp(0, 1)[0]
    assert np.array_equal(np.asarray(Image.open(tmp_path / "d.png")),
                          (y.permute(1, 2, 0).numpy() * 255.0 + 0.5).astype("uint8"))
    assert main(["restore", str(src), "-o", str(tmp_path / "e.png"), "--model", str(branched.folder),
                 "--ensemble", "3"]) == 2
    assert "--ensemble must be one of 1, 2, 4, 8" in capsys.readouterr().err and not (tmp_path / "e.png").exists()
