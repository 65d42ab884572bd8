"""The refiner (uare.model.refiner): an untrained one changes nothing, the file round-trips
through safetensors with its config, a broken file is named, and the pipeline runs it
after decoding only where asked."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from uare import pipeline
from uare.model.refiner import FILENAME, Refiner, RefinerConfig, load_refiner, save_refiner
from uare.pipeline import UARE, InferenceConfig

from test_pipeline import _IdentityModel, _photo, plain_and_extended


def _inputs(n=2, side=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand((n, 3, side, side), generator=g) * 2 - 1 for _ in range(Refiner.INPUTS)]


def _trained(cfg=None, seed=1):
    """A refiner whose output layer is no longer zero (as after training)."""
    r = Refiner(cfg or RefinerConfig(channels=8, blocks=1))
    torch.manual_seed(seed)
    torch.nn.init.normal_(r.tail.weight, std=0.05)
    return r.eval()


def test_an_untrained_refiner_returns_the_pipelines_pixels_unchanged():
    base, *rest = _inputs()
    assert torch.equal(Refiner(RefinerConfig(channels=8, blocks=2))(base, *rest), base)


def test_the_correction_depends_on_the_input_image():
    r = _trained()
    base, image, dec, dec_in = _inputs()
    with torch.no_grad():
        a, b = r(base, image, dec, dec_in), r(base, image.flip(-1), dec, dec_in)
    assert not torch.equal(a, base) and not torch.equal(a, b)


def test_sides_must_be_a_multiple_of_the_unshuffle_factor():
    base, *rest = _inputs(side=15)
    with pytest.raises(ValueError, match="multiple of 2"):
        Refiner(RefinerConfig(channels=8, blocks=1))(base, *rest)


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="refiner config"):
        RefinerConfig(channels=0)


def test_save_and_load_round_trip_with_the_config(tmp_path):
    r = _trained(RefinerConfig(channels=8, blocks=3, scale=1, skip=("lowlight",)))
    save_refiner(r, tmp_path)
    back = load_refiner(tmp_path)
    assert back.cfg == r.cfg and not any(p.requires_grad for p in back.parameters())
    x = _inputs()
    with torch.no_grad():
        assert torch.equal(back(*x), r(*x))
    assert load_refiner(tmp_path / "nowhere") is None   # a folder without one has none


def test_a_broken_refiner_file_is_named(tmp_path):
    (tmp_path / FILENAME).write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match=FILENAME):
        load_refiner(tmp_path)
    save_file({"head.weight": torch.zeros(1)}, str(tmp_path / FILENAME))   # no config in metadata
    with pytest.raises(ValueError, match="no refiner config"):
        load_refiner(tmp_path)
    save_file({"head.weight": torch.zeros(1)}, str(tmp_path / FILENAME),
              metadata={"config": json.dumps({"channels": 8, "blocks": 1, "scale": 2})})
    with pytest.raises(ValueError, match="do not fit"):
        load_refiner(tmp_path)


def test_the_gate_takes_a_share_of_the_input_and_starts_near_zero():
    cfg = RefinerConfig(channels=8, blocks=1, gate=True)
    base, image, dec, dec_in = _inputs()
    r = Refiner(cfg)
    with torch.no_grad():
        start = r(base, image, dec, dec_in)
        # at the start: 0.25% of the way to the input, no correction
        assert torch.allclose(start, torch.lerp(base, image, torch.sigmoid(torch.tensor(-6.0))), atol=1e-6)
        r.tail.bias[12:] = 20.0    # the gate's rows (3 colour x 4 unshuffle phases come first): all input
        assert torch.allclose(r(base, image, dec, dec_in), image, atol=1e-6)


def test_a_refiner_with_a_gate_starts_from_one_without():
    old = _trained(RefinerConfig(channels=8, blocks=1))
    new = Refiner(RefinerConfig(channels=8, blocks=1, gate=True)).start_from(old)
    x = _inputs()
    with torch.no_grad():
        a, b = old(*x), new(*x)
    assert not torch.equal(a, x[0])
    # the same correction; the gate only moves the base 0.25% towards the input
    assert torch.allclose(b, a + torch.sigmoid(torch.tensor(-6.0)) * (x[1] - x[0]), atol=1e-5)
    with pytest.raises(ValueError, match="do not fit"):
        Refiner(RefinerConfig(channels=16, blocks=1)).start_from(old)


def test_files_written_before_the_gate_load_without_one(tmp_path):
    r = _trained(RefinerConfig(channels=8, blocks=1))
    tensors = {k: v.contiguous() for k, v in r.state_dict().items()}
    save_file(tensors, str(tmp_path / FILENAME),
              metadata={"config": json.dumps({"channels": 8, "blocks": 1, "scale": 2})})
    back = load_refiner(tmp_path)
    assert back.cfg.gate is False
    gated = _trained(RefinerConfig(channels=8, blocks=1, gate=True))
    save_refiner(gated, tmp_path)
    assert load_refiner(tmp_path).cfg.gate is True


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """The same small model without and with a (non-zero) refiner in its folder."""
    return plain_and_extended(tmp_path_factory, lambda d: save_refiner(_trained(RefinerConfig(channels=8, blocks=1)), d))


def test_from_pretrained_loads_the_folders_refiner_and_restore_runs_it(pair, astronaut):
    plain, refined = pair
    assert plain.refiner is None and refined.refiner is not None
    img = _photo(astronaut, 64, 64)
    a = np.asarray(plain.restore(img, task="deblur").image)
    b = np.asarray(refined.restore(img, task="deblur").image)
    off = np.asarray(refined.restore(img, task="deblur", refine=False).image)
    assert np.array_equal(a, off) and not np.array_equal(a, b)
    with pytest.raises(ValueError, match="has no refiner"):
        plain.restore(img, task="deblur", refine=True)


def test_the_refine_setting_picks_the_tasks(pair, astronaut):
    _, refined = pair
    img = _photo(astronaut, 64, 64)
    ref = {t: np.asarray(refined.restore(img, task=t).image) for t in ("deblur", "dejpeg")}
    pipe = UARE(refined.model, pipeline.replace(refined.config, refine=["dejpeg"]), refined.refiner)
    assert np.array_equal(np.asarray(pipe.restore(img, task="dejpeg").image), ref["dejpeg"])
    assert np.array_equal(np.asarray(pipe.restore(img, task="deblur").image),
                          np.asarray(refined.restore(img, task="deblur", refine=False).image))
    with pytest.raises(ValueError, match="inference refine: unknown tasks"):
        UARE(refined.model, InferenceConfig(refine=["dejpg"]), refined.refiner)


def test_the_refiner_sees_the_input_and_both_decodings(pair, astronaut):
    # on an identity model with residual decoding the pipeline's pixels are the input; the
    # refiner is handed exactly that, the input, and the two (equal) decodings
    plain, refined = pair
    seen = {}

    class Spy(torch.nn.Module):
        cfg = RefinerConfig()

        def forward(self, base, image, decoded, decoded_input, types):
            seen.update(base=base, image=image, decoded=decoded, decoded_input=decoded_input, types=types)
            return base

    model = _IdentityModel(plain.model, 64)
    cfg = InferenceConfig(steps=3, guidance=pipeline.GuidanceConfig(text_scale=1.0), residual_decode=True,
                          sample_posterior=False)
    img = _photo(astronaut, 64, 64)
    out = np.asarray(UARE(model, cfg, Spy()).restore(img, task="deblur").image)
    x = torch.from_numpy(img).permute(2, 0, 1).float() / 127.5 - 1
    assert torch.allclose(seen["image"][0], x, atol=1e-6)
    assert torch.allclose(seen["base"], seen["image"], atol=1e-3)
    assert seen["decoded"].shape == seen["decoded_input"].shape == seen["image"].shape
    assert np.abs(out.astype(int) - img.astype(int)).max() <= 1
    assert seen["types"].tolist() == [[1.0 if t == "blur" else 0.0 for t in Spy.cfg.types]]
    UARE(model, cfg, Spy()).restore(img, task="derain", types=["raindrop", "noise"])
    assert [t for t, v in zip(Spy.cfg.types, seen["types"][0]) if v] == ["noise", "raindrop"]


def test_the_refiner_is_told_the_degradations_the_restoration_removes():
    assert pipeline.removed_types("dejpeg", []) == ["jpeg"]
    assert pipeline.removed_types("derain", ["raindrop"]) == ["raindrop"]
    assert pipeline.removed_types("sr", ["noise"]) == ["downsample"]
    assert pipeline.removed_types("mixed", []) == []                       # the plain mixed prompt
    assert pipeline.removed_types("mixed", ["noise", "lowlight"]) == ["lowlight", "noise"]
    assert pipeline.removed_types(None, {"haze", "bogus"}) == ["haze"]     # read from an analysis
    assert RefinerConfig().encode_types([["jpeg", "what"], []]).sum(1).tolist() == [1.0, 0.0]


def test_the_type_condition_changes_the_correction():
    r = _trained()
    torch.nn.init.normal_(r.condition.weight, std=0.5)
    x = _inputs()
    with torch.no_grad():
        a = r(*x, r.cfg.encode_types([["jpeg"], ["jpeg"]]))
        b = r(*x, r.cfg.encode_types([["noise"], ["noise"]]))
    assert not torch.equal(a, b)


def test_restorations_of_a_skipped_type_are_left_as_they_are(pair, astronaut):
    plain, refined = pair
    skipping = _trained(RefinerConfig(channels=8, blocks=1, skip=("lowlight",)))
    pipe = UARE(refined.model, refined.config, skipping)
    img = _photo(astronaut, 64, 64)
    for task, types, changed in (("lowlight", None, False), ("mixed", ["lowlight", "noise"], False),
                                 ("deblur", None, True), ("mixed", ["noise"], True)):
        on = np.asarray(pipe.restore(img, task=task, types=types).image)
        off = np.asarray(pipe.restore(img, task=task, types=types, refine=False).image)
        assert np.array_equal(on, off) != changed, (task, types)
    assert skipping.cfg.applies(["noise"]) and not skipping.cfg.applies(["noise", "lowlight"])
    assert not skipping.cfg.applies(["lowlight"], analysed=True)   # only one trained on such analyses runs there
    assert RefinerConfig(skip=("lowlight",), analysed=True).applies(["lowlight"], analysed=True)


def test_a_refiner_told_the_noise_level_starts_from_one_not_told_and_tells_levels_apart(tmp_path):
    old = _trained(RefinerConfig(channels=8, blocks=1, gate=True))
    cfg = RefinerConfig(channels=8, blocks=1, gate=True, noise_scales=(1, 2))
    new = Refiner(cfg).start_from(old)
    base, *rest = _inputs(2, 32)
    assert torch.allclose(new(base, *rest), old(base, *rest), atol=1e-6)   # the level's columns start at zero
    g = torch.Generator().manual_seed(0)
    flat = torch.zeros(1, 3, 64, 64)
    white = [flat + torch.randn(1, 1, 64, 64, generator=g) * s / 127.5 for s in (2.0, 16.0)]
    feats = torch.cat([cfg.noise_features(x) for x in white])
    assert feats.shape == (2, 16) and not torch.allclose(feats[0], feats[1])
    # white noise reads alike at both scales; a correlated field reads higher at the coarser one
    assert torch.allclose(feats[1, :8], feats[1, 8:], atol=0.1)
    smooth = F.avg_pool2d(torch.randn(1, 1, 128, 128, generator=g), 2, stride=2, ceil_mode=True) * 16 / 127.5
    f = cfg.noise_features(F.interpolate(smooth, scale_factor=2, mode="bilinear").expand(1, 3, 128, 128))
    centres = torch.arange(8, dtype=torch.float)
    assert float((f[0, 8:] * centres).sum() / f[0, 8:].sum()) > float((f[0, :8] * centres).sum() / f[0, :8].sum())
    save_refiner(new, tmp_path)
    assert load_refiner(tmp_path).cfg.noise_scales == (1, 2)
    with pytest.raises(ValueError, match="do not fit"):   # told -> not told cannot drop the columns
        Refiner(RefinerConfig(channels=8, blocks=1, gate=True)).start_from(new)
    with pytest.raises(ValueError, match="noise scales"):
        RefinerConfig(noise_scales=(0,))


def test_refine_ensemble_averages_the_refiner_over_flips_of_all_its_inputs_together(pair, astronaut):
    # a refiner that adds a left-to-right ramp: one pass keeps it, the left-right flip
    # (undone) mirrors it, so their mean is the same at mirrored columns
    plain, _ = pair
    calls = []

    class Ramp(torch.nn.Module):
        cfg = RefinerConfig()

        def forward(self, base, image, decoded, decoded_input, types):
            calls.append((base.clone(), image.clone()))
            return base + 0.2 * torch.linspace(0, 1, base.shape[-1])

    model = _IdentityModel(plain.model, 64)
    img = _photo(astronaut, 64, 64)
    x = torch.from_numpy(img).permute(2, 0, 1).float() / 127.5 - 1

    def run(**kw):
        calls.clear()
        cfg = InferenceConfig(steps=3, guidance=pipeline.GuidanceConfig(text_scale=1.0), residual_decode=True,
                              sample_posterior=False, refine_ensemble={"default": 8, "derain": 2})
        task = kw.pop("task", "deblur")
        return np.asarray(UARE(model, cfg, Ramp()).restore(img, task=task, **kw).image).astype(float)

    once = run(ensemble=1)
    assert len(calls) == 1
    two = run(task="derain")
    assert len(calls) == 2   # by task
    assert torch.allclose(calls[1][1][0], x.flip(-1), atol=1e-6)   # the image flipped, as the base is
    assert torch.allclose(calls[1][0], calls[1][1], atol=1e-3)
    eight = run()
    assert len(calls) == 8
    lr = lambda a: np.abs((a - img) - (a - img)[:, ::-1]).mean()   # the correction, mirrored
    assert lr(once) > 10 and lr(two) < 1.0 and lr(eight) < 1.0
    for bad, why in (({"deblur": 3}, r"refine_ensemble\[deblur\] must be one of"),
                     ({"deblr": 2}, "refine_ensemble: unknown tasks")):
        with pytest.raises(ValueError, match=why):
            UARE(model, InferenceConfig(refine_ensemble=bad), Ramp())
