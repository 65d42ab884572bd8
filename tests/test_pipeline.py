"""UARE on a small randomly initialised model saved to a temporary folder: every flow runs
and returns the right types and sizes, results are deterministic, the level score is the
Q-Align formula, and tiled restoration on an identity model gives back the input."""
from __future__ import annotations

import dataclasses
import json
import math
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from uare import pipeline
from uare.fidelity import auto_mix
from uare.imageio import ImageError
from uare.pipeline import UARE, Assessment, Comparison, InferenceConfig, ModelLoadError, Restoration

WORDS = ["Overall the quality is bad, poor, fair, good, excellent, score 3.10.",
         "Overall, image A is better. Overall, image B is preferred for its fidelity.",
         "How would you rate the quality of this image? enhance this image with noise and blur.",
         "Enhance the input image. Provide a brief analysis of defects and the target appearance."]


def make_test_model(seed: int = 0):
    """A ~0.1M-parameter model with the full UARE structure; 4-pixel latent grid, 64-pixel tiles."""
    from uare.model import AutoencoderConfig, LLMConfig, ModelConfig, ViTConfig, build_model
    from uare.tokenizer import train_tokenizer

    tok = train_tokenizer(WORDS * 4, 300)
    cfg = ModelConfig(
        llm=LLMConfig(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=16,
                      intermediate_size=128, vocab_size=tok.vocab_size),
        vit=ViTConfig(patch_size=8, hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2,
                      max_patches_per_side=8),
        vae=AutoencoderConfig(ch=8, ch_mult=(1, 2), num_res_blocks=1, num_groups=4),
        max_latent_size=16, timestep_shift=4.0)
    torch.manual_seed(seed)
    model = build_model(cfg, tokenizer=tok)
    torch.nn.init.normal_(model.llm2vae.weight, std=0.05)  # zero at init: make velocities matter
    return model


FAST = {"steps": 3, "answer": {"max_new_tokens": 12}, "analysis": {"max_new_tokens": 12}}


def save_test_model(folder, settings=FAST):
    make_test_model().save_pretrained(folder)
    (folder / "inference.json").write_text(json.dumps(settings))
    return folder


def plain_and_extended(tmp_path_factory, add):
    """The small test model loaded from its folder, and from a copy of it to which
    add(folder) writes more (a refiner, pixel branches)."""
    plain = save_test_model(tmp_path_factory.mktemp("plain"))
    extended = tmp_path_factory.mktemp("extended")
    for f in plain.iterdir():
        shutil.copy(f, extended / f.name)
    add(extended)
    return UARE.from_pretrained(plain, device="cpu"), UARE.from_pretrained(extended, device="cpu")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The test model's ops are tiny: thread hand-offs cost more than they save, badly so
    on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_test_model(tmp_path_factory.mktemp("uare-test-model"))


@pytest.fixture(scope="module")
def uare(model_dir):
    return UARE.from_pretrained(model_dir, device="cpu")


def _photo(astronaut, h, w):
    return np.ascontiguousarray(astronaut[100:100 + h, 150:150 + w])


def test_from_pretrained_without_a_path_says_the_default_weights_are_not_bundled(monkeypatch, tmp_path):
    monkeypatch.setattr(pipeline, "DEFAULT_FOLDERS", (tmp_path / "nowhere",))
    monkeypatch.delenv("UARE_MODEL", raising=False)
    with pytest.raises(ModelLoadError, match="no default model found.*--model DIR"):
        UARE.from_pretrained()


def test_from_pretrained_names_a_missing_or_broken_folder(tmp_path):
    with pytest.raises(ModelLoadError, match="no such model folder"):
        UARE.from_pretrained(tmp_path / "missing")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelLoadError, match=str(tmp_path)):
        UARE.from_pretrained(tmp_path)


def test_from_pretrained_reads_inference_settings_from_the_folder(uare):
    assert uare.config.steps == 3 and uare.config.answer.max_new_tokens == 12
    with pytest.raises(ValueError, match="unknown inference settings"):
        InferenceConfig.from_dict({"stpes": 3})


def test_assess_gives_a_deterministic_score_in_range_with_its_level(uare, small_photo):
    a = uare.assess(small_photo)
    assert isinstance(a, Assessment) and isinstance(a.text, str)
    assert 1.0 <= a.score <= 5.0
    from uare.data.iqa import quality_level
    assert a.level == quality_level(a.score)
    b = uare.assess(Image.fromarray(small_photo))
    assert b.score == a.score and b.text == a.text


def test_a_model_whose_vit_sees_2x_gets_views_sized_in_image_pixels(tmp_path, astronaut, monkeypatch):
    """vit.view_scale 2: every ViT view (IQA and restoration canvas) is sized by the ViT's
    stride in image pixels and capped at its largest side, so the up-sampled view fits."""
    model = make_test_model()
    model.cfg.vit.view_scale = 2           # patch 8 -> 4 image pixels, at most 32 px a side
    model.save_pretrained(tmp_path)
    (tmp_path / "inference.json").write_text(json.dumps(FAST))
    u = UARE.from_pretrained(tmp_path, device="cpu")
    sides = []
    real = u.model.prefill_vit_image
    monkeypatch.setattr(u.model, "prefill_vit_image", lambda ctx, px: (sides.append(px.shape[-2:]), real(ctx, px)))
    photo = _photo(astronaut, 50, 70)
    assert 1.0 <= u.assess(photo).score <= 5.0
    assert u.restore(photo, task="denoise").image.size == (70, 50)
    assert sides and all(h % 4 == 0 and w % 4 == 0 and max(h, w) <= 32 for h, w in sides)


def test_assess_score_is_the_probability_weighted_mean_of_the_level_words(uare, small_photo, monkeypatch):
    logp = torch.log(torch.tensor([0.1, 0.2, 0.3, 0.25, 0.15]))
    monkeypatch.setattr(uare, "_sequence_logprobs", lambda ctx, logits, seqs: logp[:len(seqs)])
    assert uare.assess(small_photo).score == pytest.approx(0.1 + 0.4 + 0.9 + 1.0 + 0.75, abs=1e-5)


def test_score_first_opens_the_answer_with_the_verdict_read_right_after_the_question(uare, small_photo, monkeypatch):
    """A model trained with data.score_first: the answer opens with the written prefix, the
    level words are read right after it, and the verdict states the returned score."""
    monkeypatch.setattr(uare, "config", dataclasses.replace(uare.config, score_first=True))
    a = uare.assess(small_photo)
    assert a.text.startswith(f"{pipeline.SCORE_PREFIX} {a.level}, score {a.score:.2f}.")
    ctx = uare.model.new_context()
    uare._prefill_vit(ctx, uare._iqa_views(pipeline.load_image(small_photo))[0])
    uare.model.prefill_text(ctx, uare.tok.encode(pipeline.ASSESS_QUESTION))
    logp = uare._read_at(ctx, pipeline.SCORE_PREFIX, uare.level_seqs)
    assert a.score == pytest.approx(pipeline.level_score(logp, range(len(pipeline.LEVELS))), abs=1e-5)


def test_assess_pools_the_level_reading_over_iqa_views_spread_over_the_image(model_dir, astronaut, monkeypatch):
    """iqa_views 5 on a 40x56 photo with 16 px crops: the centre crop and the four corner
    crops are read, and the score is the expectation of their mean level probabilities."""
    u = UARE.from_pretrained(model_dir, device="cpu")
    u.config = dataclasses.replace(u.config, iqa_crop=16, iqa_views=5)
    photo = _photo(astronaut, 40, 56)
    x = torch.from_numpy(photo.astype(np.float32) / 255).permute(2, 0, 1)
    want = [x[:, 12:28, 20:36], x[:, :16, :16], x[:, :16, 40:], x[:, 24:, :16], x[:, 24:, 40:]]
    views = u._iqa_views(Image.fromarray(photo))
    assert len(views) == 5 and all(torch.equal(v, w) for v, w in zip(views, want))
    one_hot = [torch.tensor(p).clamp_min(1e-12).log() for p in ([0.0, 0, 0, 0, 1], [1.0, 0, 0, 0, 0])]
    monkeypatch.setattr(u, "_sequence_logprobs", lambda ctx, logits, seqs: one_hot[0])     # centre: excellent
    read = []
    monkeypatch.setattr(u, "_read_views", lambda v, q, head, words: (read.append(len(v)), [one_hot[1]] * len(v))[1])
    a = u.assess(photo)
    assert read == [4] and a.score == pytest.approx(0.2 * 5 + 0.8 * 1, abs=1e-4)
    u.config = dataclasses.replace(u.config, iqa_views=9)
    assert len(u._iqa_views(Image.fromarray(photo[:16, :16]))) == 1    # one crop's worth of image
    with pytest.raises(ValueError, match="iqa_views"):
        InferenceConfig.from_dict({"iqa_views": 0})


def test_iqa_view_phase_starts_every_view_that_far_into_a_jpeg_block(model_dir, astronaut):
    """40x56 photo, 16 px views at phase 4: spots 12/20 (centre), 0 and 24/40 (corners)
    become 12/20, 4 and 20/36, the block that holds each start, 4 px in; where the image
    has no room for that phase a view keeps its start."""
    u = UARE.from_pretrained(model_dir, device="cpu")
    u.config = dataclasses.replace(u.config, iqa_crop=16, iqa_views=5, iqa_view_phase=4)
    photo = _photo(astronaut, 40, 56)
    x = torch.from_numpy(photo.astype(np.float32) / 255).permute(2, 0, 1)
    want = [x[:, 12:28, 20:36], x[:, 4:20, 4:20], x[:, 4:20, 36:52], x[:, 20:36, 4:20], x[:, 20:36, 36:52]]
    views = u._iqa_views(Image.fromarray(photo))
    assert len(views) == 5 and all(torch.equal(v, w) for v, w in zip(views, want))
    assert [pipeline._on_phase(s, room, 4) for s, room in ((0, 24), (23, 24), (24, 24), (0, 3), (2, 2))] == \
        [4, 20, 20, 0, 2]
    assert [pipeline._on_phase(s, 40, 0) for s in (0, 7, 8, 39)] == [0, 0, 8, 32]
    for bad in (8, -1, 2.5, "4"):
        with pytest.raises(ValueError, match="iqa_view_phase"):
            InferenceConfig.from_dict({"iqa_view_phase": bad})


@pytest.mark.parametrize("words", [[[5], [6], [7]], "levels"])
def test_view_readings_match_reading_each_view_alone(uare, astronaut, words):
    """One-token words take the batched path (extend_text over all views), longer ones
    (this tokenizer's levels) view by view: both give each view's own reading."""
    words = uare.level_seqs if words == "levels" else words
    photo = torch.from_numpy(_photo(astronaut, 16, 48).astype(np.float32) / 255).permute(2, 0, 1)
    views = [photo[:, :, i:i + 16] for i in (0, 16, 32)]
    q = uare.tok.encode("How good is this image?")
    got = uare._read_views(views, q, "Overall the quality is", words)
    alone = []
    for v in views:
        ctx = uare.model.new_context()
        uare._prefill_vit(ctx, v)
        uare.model.prefill_text(ctx, q)
        alone.append(uare._read_at(ctx, "Overall the quality is", words))
    assert all(torch.allclose(g, a, atol=1e-4) for g, a in zip(got, alone))
    assert not torch.allclose(alone[0], alone[1], atol=1e-4)     # the views do differ


def test_word_sequence_logprobs_match_token_by_token_scoring(uare, small_photo):
    m = uare.model
    ctx = m.new_context()
    uare._prefill_vit(ctx, Image.fromarray(small_photo))
    logits = m.decode_step(ctx, uare.tok.bos_id)
    got = uare._sequence_logprobs(ctx, logits, uare.level_seqs)
    for k, seq in enumerate(uare.level_seqs):
        c, lg, total = ctx.fork(), logits, 0.0
        for t in seq:
            total += torch.log_softmax(lg.float(), -1)[t].item()
            lg = m.decode_step(c, t)
        assert got[k].item() == pytest.approx(total, abs=1e-4)


def test_compare_returns_the_winner_with_a_probability_of_at_least_a_half(uare, small_photo):
    noisy = np.clip(small_photo + np.random.default_rng(0).normal(0, 25, small_photo.shape), 0, 255).astype(np.uint8)
    c = uare.compare(small_photo, noisy)
    assert isinstance(c, Comparison) and c.preferred in ("A", "B") and isinstance(c.text, str)
    assert 0.5 <= c.probability <= 1.0
    r = uare.compare(noisy, small_photo, ref=small_photo)
    assert r.preferred in ("A", "B") and 0.5 <= r.probability <= 1.0
    assert uare.compare(small_photo, noisy) == c


def test_compare_by_answer_does_not_depend_on_the_order_of_the_images(uare, small_photo):
    """The verdict is read with the images in both orders and averaged: swapping A and B
    swaps the winner and keeps its probability (a single reading of a random model
    prefers one position, whatever the images)."""
    noisy = np.clip(small_photo + np.random.default_rng(1).normal(0, 25, small_photo.shape), 0, 255).astype(np.uint8)
    for ref in (None, small_photo):
        ab = uare.compare(small_photo, noisy, ref=ref, method="answer")
        ba = uare.compare(noisy, small_photo, ref=ref, method="answer")
        assert ab.method == ba.method == "answer" and ab.scores is None
        assert ab.probability == pytest.approx(ba.probability, abs=1e-5)
        if ab.probability > 0.5 + 1e-5:
            assert {ab.preferred, ba.preferred} == {"A", "B"}


def test_compare_by_scores_prefers_the_higher_assessment(uare, small_photo):
    noisy = np.clip(small_photo + np.random.default_rng(1).normal(0, 25, small_photo.shape), 0, 255).astype(np.uint8)
    sa, sb = uare.assess(small_photo).score, uare.assess(noisy).score
    c = uare.compare(small_photo, noisy, method="scores")
    assert c.method == "scores" and c.scores == pytest.approx((sa, sb))
    assert c.preferred == ("A" if sa >= sb else "B") and 0.5 <= c.probability <= 1.0
    r = uare.compare(noisy, small_photo, method="scores")
    assert r.preferred != c.preferred and r.probability == pytest.approx(c.probability)
    assert f"Overall, image {c.preferred} is better" in c.text and "reference was not used" not in c.text
    assert "reference was not used" in uare.compare(small_photo, noisy, ref=small_photo, method="scores").text


def test_compare_auto_uses_scores_without_a_reference_and_the_answer_with_one(uare, small_photo):
    assert uare.config.compare == "answer"    # the default for a model folder that says nothing
    assert uare.compare(small_photo, small_photo[::-1]).method == "answer"
    assert uare.compare(small_photo, small_photo[::-1], method="auto").method == "scores"
    assert uare.compare(small_photo, small_photo[::-1], ref=small_photo, method="auto").method == "answer"
    with pytest.raises(ValueError, match="compare method must be one of"):
        uare.compare(small_photo, small_photo, method="votes")
    with pytest.raises(ValueError, match="inference compare must be one of"):
        InferenceConfig.from_dict({"compare": "votes"})


def test_p_first_better_is_thurstones_rule_on_the_level_readings():
    def reading(*p):
        return torch.tensor(p, dtype=torch.float64).clamp_min(1e-30).log()

    good, poor = reading(0, 0.1, 0.2, 0.4, 0.3), reading(0.3, 0.4, 0.2, 0.1, 0)
    assert pipeline._p_first_better(good, poor) > 0.9
    assert pipeline._p_first_better(good, poor) + pipeline._p_first_better(poor, good) == pytest.approx(1.0)
    assert pipeline._p_first_better(good, good) == pytest.approx(0.5)
    # no spread: certainty, or a tie
    sure4, sure2 = reading(0, 0, 0, 1, 0), reading(0, 1, 0, 0, 0)
    assert pipeline._p_first_better(sure4, sure2) == 1.0 and pipeline._p_first_better(sure2, sure2) == 0.5
    # two readings one level apart with unit spread each: Phi(1 / sqrt(2))
    a, b = reading(0, 0.5, 0, 0.5, 0), reading(0.5, 0, 0.5, 0, 0)
    assert pipeline._level_moments(a) == pytest.approx((3.0, 1.0))
    assert pipeline._p_first_better(a, b) == pytest.approx(0.5 * (1 + math.erf(0.5)))


def test_restore_keeps_the_size_and_sr_gives_four_times(uare, astronaut):
    img = _photo(astronaut, 15, 21)  # off the latent grid
    r = uare.restore(img, task="denoise")
    assert isinstance(r, Restoration) and isinstance(r.image, Image.Image)
    assert r.image.size == (21, 15) and r.image.mode == "RGB" and r.text is None
    assert r.prompt == "enhance this image with noise." and r.task == "denoise"
    sr = uare.restore(img, task="sr")
    assert sr.image.size == (84, 60)
    assert sr.prompt == "enhance this mix-degraded image."


def test_same_seed_same_image_and_another_seed_another(uare, small_photo):
    img = small_photo[:40, :56]
    a = np.asarray(uare.restore(img, task="deblur", seed=3).image)
    b = np.asarray(uare.restore(img, task="deblur", seed=3).image)
    c = np.asarray(uare.restore(img, task="deblur", seed=4).image)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("batch", [1, 3])
def test_large_images_are_restored_in_tiles_to_the_exact_size(uare, astronaut, monkeypatch, batch):
    monkeypatch.setattr(uare.config, "tile_batch", batch)
    calls = []
    real = uare._restore_tiles
    monkeypatch.setattr(uare, "_restore_tiles", lambda tiles, job: calls.append(tuple(tiles.shape)) or real(tiles, job))
    ticks = []
    r = uare.restore(_photo(astronaut, 70, 150), task="dehaze", steps=3, progress=lambda d, n: ticks.append((d, n)))
    assert r.image.size == (150, 70)
    n = sum(c[0] for c in calls)
    assert n > 1 and all(c[0] <= batch and h <= 64 and w <= 64 and h % 4 == 0 and w % 4 == 0 for c in calls
                         for h, w in [c[-2:]])
    assert len(calls) == -(-n // batch)
    # 2 steps a tile, told after every step of every batch
    assert len(ticks) == 2 * len(calls) and ticks[-1] == (2 * n, 2 * n)
    assert all(a[0] < b[0] for a, b in zip(ticks, ticks[1:]))


def test_batched_tiles_restore_as_one_tile_at_a_time(uare, astronaut):
    img = _photo(astronaut, 70, 150)
    out = {}
    for batch in (1, 4):
        cfg = InferenceConfig(steps=3, sample_posterior=False, tile_batch=batch)
        out[batch] = np.asarray(UARE(uare.model, cfg).restore(img, task="dehaze", seed=2).image).astype(int)
    assert np.abs(out[1] - out[4]).max() <= 1      # float sums may round apart, nothing more
    with pytest.raises(ValueError, match="tile_batch"):
        UARE(uare.model, InferenceConfig(tile_batch=0))


def test_analyze_returns_the_analysis_once_for_single_and_tiled_images(uare, astronaut, monkeypatch):
    r = uare.restore(_photo(astronaut, 32, 40), analyze=True, steps=2)
    assert isinstance(r.text, str) and r.image.size == (40, 32)
    assert r.prompt == pipeline.ANALYZE_INSTRUCTION
    calls = []
    real = uare._generate
    monkeypatch.setattr(uare, "_generate", lambda *a, **k: calls.append(1) or real(*a, **k))
    big = uare.restore(_photo(astronaut, 40, 150), analyze=True, steps=2)
    assert isinstance(big.text, str) and big.image.size == (150, 40)
    assert len(calls) == 1  # generated once on the whole image, prefilled into each tile


def test_the_whole_image_analysis_builds_no_guidance_contexts(uare, astronaut, monkeypatch):
    guided = UARE(uare.model, dataclasses.replace(uare.config, guidance=pipeline.GuidanceConfig(
        text_scale=4.0, img_scale=2.0)))
    made = []
    real = guided.model.new_context
    monkeypatch.setattr(guided.model, "new_context", lambda: made.append(1) or real())
    job = pipeline._Job("x", True, 2, 0, torch.device("cpu"))
    guided._analysis_of_whole(torch.rand(3, 40, 150), job)
    assert len(made) == 1                   # the full context only: text is sampled unguided
    made.clear()
    guided._condition(torch.rand(2, 3, 32, 32), job)
    assert len(made) == 2                   # restoring: full (forked for "text") and "image"


def test_auto_picks_the_instruction_from_the_models_own_assessment(uare, small_photo, monkeypatch):
    img = small_photo[:32, :32]
    monkeypatch.setattr(uare, "assess", lambda im: Assessment(2.0, "poor", "Strong sensor noise. Overall the quality is poor."))
    r = uare.restore(img, task="auto", steps=2)
    assert (r.task, r.prompt) == ("denoise", "enhance this image with noise.")
    monkeypatch.setattr(uare, "assess", lambda im: Assessment(2.0, "poor", "Mild blur and heavy noise."))
    assert uare.restore(img, task="auto", steps=2).task == "mixed"
    monkeypatch.setattr(uare, "assess", lambda im: Assessment(4.5, "excellent", "A clean photo."))
    r = uare.restore(img, task="auto", steps=2)
    assert r.prompt == "enhance this mix-degraded image."
    assert uare.restore(img, task="dehaze", prompt="make it crisp", steps=2).prompt == "make it crisp"


def test_known_degradations_are_named_in_the_instruction_and_steer_the_colour_fix(uare, small_photo, monkeypatch):
    img = small_photo[:32, :32]
    fixed = []
    real = pipeline.apply_color_fix
    monkeypatch.setattr(pipeline, "apply_color_fix", lambda *a: fixed.append(1) or real(*a))
    pipe = UARE(uare.model, dataclasses.replace(uare.config, color_fix=True))
    r = pipe.restore(img, task="derain", types=["raindrop"], steps=2)
    assert (r.task, r.prompt) == ("derain", "enhance this image with raindrops.") and fixed == [1]
    r = pipe.restore(img, task="derain", steps=2)
    assert r.prompt == "enhance this image with rain streaks." and fixed == [1]   # streaks add light
    r = pipe.restore(img, types=["lowlight", "noise"], steps=2)       # auto: no assessment needed
    assert (r.task, r.prompt) == ("mixed", "enhance this image with low-light and noise.")
    r = pipe.restore(img, task="mixed", types=["blur", "jpeg"], steps=2)
    assert r.prompt == "enhance this image with blur and JPEG artifacts." and fixed == [1, 1]
    assert pipe.restore(img, task="sr", types=["blur"], steps=2).prompt == pipeline.HIGH_ORDER_INSTRUCTION
    with pytest.raises(ValueError, match="unknown degradation types.*smudge"):
        pipe.restore(img, task="deblur", types=["smudge"])


def test_bad_restore_arguments_and_inputs_raise_value_errors(uare, tmp_path, monkeypatch, small_photo):
    with pytest.raises(ValueError, match="unknown task"):
        uare.restore(small_photo, task="colorize")
    with pytest.raises(ValueError, match="steps"):
        uare.restore(small_photo, task="denoise", steps=1)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(ImageError, match="bad.png"):
        uare.restore(bad)
    monkeypatch.setattr(pipeline, "MAX_PIXELS", 100_000)
    with pytest.raises(ImageError, match="x4 output 512x512"):
        uare.restore(small_photo, task="sr")


# ---- a model that is the identity -----------------------------------------------------

class _IdentityAE(torch.nn.Module):
    """Exact space-to-depth autoencoder: 3x2x2 pixels -> 12 of 16 latent channels."""

    def encode(self, x, sample=True, generator=None):
        z = F.pixel_unshuffle(x, 2)
        return torch.cat([z, torch.zeros_like(z[:, :4])], dim=1)

    def decode(self, z):
        return F.pixel_shuffle(z[:, :12], 2)


class _Ctx:
    def fork(self):
        return _Ctx()


class _IdentityModel(torch.nn.Module):
    """Model API whose velocity carries the noise straight to the clean latent tokens, so a
    restoration returns its input exactly; the full UARE pipeline runs around it."""

    def __init__(self, base, max_latent_size):
        super().__init__()
        self.cfg = base.cfg.__class__.from_dict({**base.cfg.to_dict(), "max_latent_size": max_latent_size})
        self.tokenizer = base.tokenizer
        self.autoencoder = _IdentityAE()
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.x0 = None

    def new_context(self):
        return _Ctx()

    def prefill_vae_image(self, ctx, latent):
        from uare.model.patches import latents_to_tokens
        self.x0 = latents_to_tokens(latent, 2)

    def prefill_vit_image(self, ctx, pixels):
        pass

    def prefill_text(self, ctx, ids):
        pass

    def decode_step(self, ctx, token):
        return torch.zeros(self.tokenizer.vocab_size)

    def velocity(self, ctx, x, t, grid, anchor=None):
        assert x.shape == self.x0.shape and x.shape[-2:] == (grid[0] * grid[1], 64)
        assert torch.equal(anchor, self.x0)    # the pipeline anchors on the canvas's own latent
        return (x - self.x0) / t  # x_t = (1-t) x0 + t eps  =>  v = eps - x0 = (x_t - x0) / t


@pytest.mark.parametrize("renorm", ["global", "text_channel"])
def test_tiled_and_untiled_restoration_agree_on_an_identity_model(uare, astronaut, renorm):
    img = _photo(astronaut, 150, 200)
    cfg = InferenceConfig(steps=5, guidance=pipeline.GuidanceConfig(renorm_type=renorm))
    tiled = UARE(_IdentityModel(uare.model, 16), cfg)      # 64-pixel tiles
    whole = UARE(_IdentityModel(uare.model, 64), cfg)      # 256 pixels: one canvas
    assert tiled.tiles.tile == 64 and whole.tiles.tile == 256
    a = np.asarray(tiled.restore(img, task="denoise").image)
    b = np.asarray(whole.restore(img, task="denoise").image)
    assert a.shape == b.shape == img.shape
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    assert np.abs(a.astype(int) - img.astype(int)).max() <= 1


class _LossyAE(_IdentityAE):
    """Decodes with a smooth error (a cast and a tone curve), like a small trained
    autoencoder, so a direct decode cannot give the input back."""

    def decode(self, z):
        x = super().decode(z)
        return x * 0.9 + 0.05 + 0.05 * torch.sin(3 * x)


def test_residual_decoding_cancels_the_autoencoders_error(uare, astronaut):
    img = _photo(astronaut, 96, 128)
    outs = {}
    for residual in (False, True):
        model = _IdentityModel(uare.model, 64)
        model.autoencoder = _LossyAE()
        pipe = UARE(model, InferenceConfig(steps=3, guidance=pipeline.GuidanceConfig(text_scale=1.0),
                                           residual_decode=residual))
        outs[residual] = np.asarray(pipe.restore(img, task="denoise").image).astype(int)
    assert np.abs(outs[True] - img.astype(int)).max() <= 1
    assert np.abs(outs[False] - img.astype(int)).mean() > 5
    # a task list: residual for the tasks named, direct for the others
    model = _IdentityModel(uare.model, 64)
    model.autoencoder = _LossyAE()
    pipe = UARE(model, InferenceConfig(steps=3, guidance=pipeline.GuidanceConfig(text_scale=1.0),
                                       residual_decode=["dejpeg"]))
    assert np.array_equal(np.asarray(pipe.restore(img, task="dejpeg").image).astype(int), outs[True])
    assert np.array_equal(np.asarray(pipe.restore(img, task="denoise").image).astype(int), outs[False])


def test_strength_starts_sampling_from_the_noised_input(uare, astronaut):
    # residual decoding: a start next to the input's own latent leaves the image as it was
    img = _photo(astronaut, 64, 64)
    cfg = InferenceConfig(steps=3, guidance=pipeline.GuidanceConfig(text_scale=1.0), residual_decode=True,
                          sample_posterior=False, strength={"deblur": 1e-4, "default": 1.0})
    pipe = UARE(uare.model, cfg)

    def change(task, **kw):
        return np.abs(np.asarray(pipe.restore(img, task=task, **kw).image).astype(int) - img.astype(int)).mean()
    assert change("deblur") < 0.05
    assert change("denoise") > 1          # "default": from pure noise
    assert change("denoise", strength=1e-4) < 0.05
    assert change("deblur", strength=1.0) == pytest.approx(change("denoise"), rel=0.5)
    with pytest.raises(ValueError, match="strength"):
        pipe.restore(img, task="deblur", strength=0.0)
    for bad in (1.5, {"deblurr": 0.5}, {"default": 0.0}):
        with pytest.raises(ValueError, match="strength"):
            UARE(uare.model, InferenceConfig(strength=bad))


def test_temperature_scales_the_starting_noise(uare, astronaut):
    img = _photo(astronaut, 64, 64)
    cfg = InferenceConfig(steps=3, guidance=pipeline.GuidanceConfig(text_scale=1.0), sample_posterior=False,
                          temperature={"deblur": 0.0, "default": 1.0})
    pipe = UARE(uare.model, cfg)

    def out(task, seed, **kw):
        return np.asarray(pipe.restore(img, task=task, seed=seed, **kw).image).astype(int)
    # 0: the noise's mean, so the seed no longer matters; 1 (the default here): it does
    assert np.array_equal(out("deblur", 0), out("deblur", 7))
    assert not np.array_equal(out("denoise", 0), out("denoise", 7))
    assert np.array_equal(out("denoise", 0, temperature=0.0), out("denoise", 7, temperature=0.0))
    # in between, a sample lies between its two ends (the same noise draw, scaled)
    a, half, b = (out("denoise", 3, temperature=t) for t in (0.0, 0.5, 1.0))
    assert 0 < np.abs(half - a).mean() < np.abs(b - a).mean()
    with pytest.raises(ValueError, match="temperature"):
        pipe.restore(img, task="deblur", temperature=-0.1)
    # "analyze": analyse-then-restore runs take it whatever their task
    guided = UARE(uare.model, InferenceConfig(steps=3, guidance=pipeline.GuidanceConfig(text_scale=1.0),
                                              sample_posterior=False, analysis=pipeline.TextConfig(max_new_tokens=4),
                                              temperature={"analyze": 0.0, "default": 1.0}))
    g = [np.asarray(guided.restore(img, task="deblur", analyze=True, seed=s).image) for s in (0, 7)]
    assert np.array_equal(g[0], g[1])
    assert not np.array_equal(*(np.asarray(guided.restore(img, task="deblur", seed=s).image) for s in (0, 7)))
    for bad in (2.5, float("nan"), {"deblurr": 0.5}, {"default": -1.0}):
        with pytest.raises(ValueError, match="temperature"):
            UARE(uare.model, InferenceConfig(temperature=bad))


def test_mix_keeps_a_share_of_the_models_change(uare, astronaut):
    img = _photo(astronaut, 64, 48)
    cfg = InferenceConfig(steps=3, guidance=pipeline.GuidanceConfig(text_scale=1.0), sample_posterior=False,
                          temperature=0.0, mix={"denoise": 0.0, "default": 1.0})
    pipe = UARE(uare.model, cfg)

    def out(task, **kw):
        return np.asarray(pipe.restore(img, task=task, **kw).image).astype(int)
    # 0 (denoise here): the input itself, whatever the model made
    assert np.array_equal(out("denoise"), np.asarray(img))
    full = out("deblur")
    assert np.abs(full - np.asarray(img)).mean() > 1.0
    # 0.5: halfway between the input and the model's output (pixels rounded once)
    half = out("deblur", mix=0.5)
    assert np.abs(half - (np.asarray(img) + full) / 2).max() <= 1.0
    # a call's own mix overrides the model's setting for its task
    assert np.abs(out("denoise", mix=1.0) - np.asarray(img)).mean() > 1.0
    # x4 sr: the input it moves back toward is the bicubic up-sampling
    up = np.asarray(Image.fromarray(img).resize((48 * 4, 64 * 4), Image.BICUBIC))
    assert np.array_equal(np.asarray(pipe.restore(img, task="sr", mix=0.0).image), up)
    # auto: for denoise the share uare.fidelity reads from the input's noise and the change
    noisy = np.clip(img + np.random.default_rng(0).normal(0, 20, img.shape), 0, 255).astype(np.uint8)
    whole = pipe.restore(noisy, task="denoise", mix=1.0)
    auto = pipe.restore(noisy, task="denoise", mix="auto")
    x = torch.from_numpy(noisy.astype(np.float32) / 255).permute(2, 0, 1)
    y = torch.from_numpy(np.asarray(whole.image).astype(np.float32) / 255).permute(2, 0, 1)
    assert whole.mix == 1.0 and auto.mix == pytest.approx(auto_mix(y, x), abs=0.02) and 0 < auto.mix < 1
    assert np.abs(np.asarray(auto.image).astype(int) - np.round(noisy + auto.mix * (y.permute(1, 2, 0).numpy()
                  * 255 - noisy))).max() <= 1
    assert pipe.restore(img, task="deblur", mix="AUTO").mix == 1.0   # other tasks: the model's output
    for bad in (-0.1, 1.5, float("nan"), "half"):
        with pytest.raises(ValueError, match="mix"):
            pipe.restore(img, task="deblur", mix=bad)
    for bad in (1.5, {"deblurr": 0.5}, {"default": -0.5}, {"denoise": "most"}):
        with pytest.raises(ValueError, match="mix"):
            UARE(uare.model, InferenceConfig(mix=bad))


def test_color_fix_gives_tone_keeping_tasks_the_inputs_low_band(uare, astronaut):
    # the lossy autoencoder casts and bends the tone; decoded directly, the colour fix
    # takes the input's low band back for denoise, not for dehaze (its target is brighter)
    img = _photo(astronaut, 96, 128)

    def run(task, fix=None, **cfg):
        model = _IdentityModel(uare.model, 64)
        model.autoencoder = _LossyAE()
        pipe = UARE(model, InferenceConfig(steps=3, guidance=pipeline.GuidanceConfig(text_scale=1.0), **cfg))
        out = np.asarray(pipe.restore(img, task=task, color_fix=fix).image).astype(float)
        return np.abs(out.mean((0, 1)) - img.mean((0, 1))).max()

    cast = run("denoise")
    assert cast > 5
    assert run("denoise", color_fix=True, color_fix_sigma=8.0) < 1
    assert run("dehaze", color_fix=True) == pytest.approx(cast, abs=2)
    assert run("dehaze", color_fix=["dehaze"]) < 1
    # the caller's word wins over the setting, both ways
    assert run("dehaze", fix=True) < 1
    assert run("denoise", fix=False, color_fix=True) == pytest.approx(cast, abs=1e-9)
    with pytest.raises(ValueError, match="color_fix_sigma must be positive"):
        UARE(uare.model, InferenceConfig(color_fix=True, color_fix_sigma=0.0))
    with pytest.raises(ValueError, match="unknown tasks.*deblurr"):
        UARE(uare.model, InferenceConfig(color_fix=["deblurr"]))


def test_color_fix_follows_the_degradations_being_removed(uare):
    pipe = UARE(uare.model, InferenceConfig(color_fix=True))
    assert pipe._color_fix("deblur", []) and pipe._color_fix("sr", []) and pipe._color_fix("dejpeg", [])
    assert not pipe._color_fix("lowlight", []) and not pipe._color_fix("dehaze", [])
    assert not pipe._color_fix("derain", [])              # rain streaks add light
    assert pipe._color_fix("derain", ["raindrop"]) and not pipe._color_fix("derain", ["rain", "raindrop"])
    assert not pipe._color_fix("mixed", [])               # nothing named: unknown
    assert pipe._color_fix("mixed", ["blur", "noise", "jpeg"])
    assert pipe._color_fix("auto", ["raindrop"]) and not pipe._color_fix("auto", ["rain"])
    assert not pipe._color_fix("mixed", ["blur", "haze"])
    assert not pipe._color_fix("lowlight", ["noise"])     # a named task keeps its own rule
    listed = UARE(uare.model, InferenceConfig(color_fix=["sr", "derain"]))
    assert listed._color_fix("sr", []) and not listed._color_fix("deblur", [])
    assert listed._color_fix("derain", []) and listed._color_fix("auto", ["rain", "raindrop"])
    assert not listed._color_fix("mixed", ["blur"])
    assert not UARE(uare.model, InferenceConfig())._color_fix("sr", [])   # off by default


def test_inference_tile_and_iqa_crop_settings(uare, monkeypatch):
    small = UARE(uare.model, InferenceConfig(tile=64, iqa_crop=32))
    assert small.tiles.tile == 64 and small.tiles.overlap == 8
    with pytest.raises(ValueError, match="multiple of"):
        UARE(uare.model, InferenceConfig(tile=65))
    seen = []
    monkeypatch.setattr(small.model, "prefill_vit_image", lambda ctx, pixels: seen.append(tuple(pixels.shape)))
    small._prefill_vit(None, torch.rand(3, 100, 150))
    assert seen == [(3, 32, 32)]            # a native-scale centre crop, not a resize
