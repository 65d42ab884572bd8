"""`uare data build`, the on-the-fly sample stream, CFG dropout and packing."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest
from PIL import Image

from image_helpers import ramp
from train_helpers import fake_degrade, make_dataset
from uare.cli import main
from uare.data import responses
from uare.data.dataset import DataConfig, RawItem, SampleStream, fit_size, manifest_paths
from uare.data.packing import DropoutConfig, dropout_mask, pack


def test_build_command_writes_manifests_and_goes_on_past_a_bad_file(tmp_path, small_photo, capsys):
    clean = tmp_path / "clean"
    clean.mkdir()
    Image.fromarray(small_photo).save(clean / "a.png")
    (clean / "broken.png").write_bytes(b"not an image")
    rc = main(["data", "build", str(clean), "-o", str(tmp_path / "out"), "--per-image", "3"])
    assert rc == 1
    assert "broken.png" in capsys.readouterr().err
    lines = [json.loads(s) for s in (tmp_path / "out" / "manifest-multi.jsonl").read_text().splitlines()]
    assert len(lines) == 3 and all(r["preset"].startswith("multi:") for r in lines)
    summary = json.loads((tmp_path / "out" / "build.json").read_text())
    assert summary["images"] == 1 and summary["counts"]["single"] == 3


def test_build_is_reproducible_from_its_seed(tmp_path, small_photo):
    a = make_dataset(tmp_path / "a", small_photo)
    b = make_dataset(tmp_path / "b", small_photo)
    for k in ("single", "iqa", "high_order"):
        ra = [{**r, "image": ""} for r in map(json.loads, (a / f"manifest-{k}.jsonl").read_text().splitlines())]
        rb = [{**r, "image": ""} for r in map(json.loads, (b / f"manifest-{k}.jsonl").read_text().splitlines())]
        assert ra == rb


def test_bad_usage_is_exit_code_two(tmp_path):
    assert main(["data", "build", str(tmp_path / "nothing"), "-o", str(tmp_path / "o")]) == 2
    assert main(["data", "build", str(tmp_path), "-o", str(tmp_path / "o"), "--kinds", "bogus"]) == 2


def test_fit_size_respects_bounds_and_stride():
    assert fit_size(100, 50, 64, 256, 16) == (128, 64)
    w, h = fit_size(2000, 500, 512, 1024, 16)
    assert max(w, h) <= 1024 and w % 16 == 0 and h % 16 == 0


@pytest.fixture
def stream(tmp_path, small_photo):
    m = make_dataset(tmp_path, small_photo, n=2)
    cfg = DataConfig(manifests=manifest_paths(m, ["single", "interleaved", "iqa"]),
                     ratios={"single": 1, "interleaved": 1, "iqa": 1}, crop=48,
                     res_min_short=16, res_max_long=48, iqa_min_short=16, iqa_max_long=48)
    return SampleStream(cfg, vae_stride=8, vit_stride=8, degrade_fn=fake_degrade)


def test_sample_n_is_the_same_whenever_it_is_built(stream):
    a, b = stream[7], stream[7]
    assert [(i.role, i.text, i.loss) for i in a.items] == [(i.role, i.text, i.loss) for i in b.items]
    for x, y in zip(a.items, b.items):
        if x.image is not None:
            assert np.array_equal(np.asarray(x.image), np.asarray(y.image))


def test_items_follow_the_bagel_edit_and_interleave_layouts(stream):
    seen = set()
    for n in range(30):
        s = stream[n]
        roles = [(i.role, i.loss) for i in s.items]
        seen.add(s.kind)
        if s.kind == "single":
            assert roles == [("vae", False), ("vit", False), ("text", False), ("vae", True)]
        elif s.kind == "interleaved":
            assert roles == [("vae", False), ("vit", False), ("text", False), ("text", True), ("vae", True)]
            assert responses.mentioned_types(s.items[3].text) == set(s.record["severity"])
        else:
            assert roles[-2:] == [("text", False), ("text", True)]
            assert all(r == ("vit", False) for r in roles[:-2])
            assert not any(i.cfg for i in s.items)  # VLM data is never CFG-dropped
    assert seen == {"single", "interleaved", "iqa"}


def test_online_kinds_redraw_the_degradation_for_every_sample(tmp_path, small_photo):
    m = make_dataset(tmp_path, small_photo, n=1)   # one photo: 4 fixed iqa degradations
    kw = dict(manifests=manifest_paths(m, ["iqa"]), ratios={"iqa": 1}, crop=48,
              iqa_min_short=16, iqa_max_long=48)
    fixed = SampleStream(DataConfig(**kw), vae_stride=8, vit_stride=8, degrade_fn=fake_degrade)
    online = SampleStream(DataConfig(**kw, online=("iqa",)), vae_stride=8, vit_stride=8,
                          degrade_fn=fake_degrade)

    def seen(stream):
        recs = [stream[n].record for n in range(60)]
        return {json.dumps(r, sort_keys=True) for r in recs}

    assert len(seen(fixed)) <= 4               # the manifest's lines, nothing else
    assert len(seen(online)) > 20              # fresh presets and seeds
    presets = {s.record and next(iter(s.record.get("severity", {})), None)
               for s in (online[n] for n in range(60))}
    assert len(presets) > 4
    a, b = online[11], online[11]              # still a function of n (resume, workers)
    assert a.record == b.record and [i.text for i in a.items] == [i.text for i in b.items]
    with pytest.raises(ValueError, match="online"):
        SampleStream(DataConfig(**kw, online=("iqa_real",)), degrade_fn=fake_degrade)


def test_cfg_dropout_rate_and_what_is_never_dropped():
    items = [RawItem("vae", cfg=True), RawItem("vit", cfg=True), RawItem("text", cfg=True),
             RawItem("text", loss=True), RawItem("vae", loss=True)]
    rng = random.Random(0)
    masks = np.array([dropout_mask(items, DropoutConfig(), rng) for _ in range(4000)])
    rates = masks.mean(0)
    assert np.allclose(rates[:3], 0.1, atol=0.02)
    assert rates[3] == 0 and rates[4] == 0
    # the three items drop independently
    both = (masks[:, 0] & masks[:, 1]).mean()
    assert abs(both - 0.01) < 0.01


def test_pack_keeps_order_and_budget():
    assert pack([5, 5, 5, 20, 3], 12) == [[0, 1], [2], [3], [4]]
    assert pack([1, 1, 1], 1) == [[0], [1], [2]]


def test_score_first_puts_the_verdict_before_the_description(tmp_path, small_photo):
    from uare.data import iqa

    plain = iqa.synthetic_scoring_sample({"severity": {"noise": 0.5}}, seed=3)
    first = iqa.synthetic_scoring_sample({"severity": {"noise": 0.5}}, seed=3, score_first=True)
    assert plain.answer.endswith("score 3.00.") and first.answer.startswith("Overall the quality is fair, score 3.00.")
    assert sorted(plain.answer.split()) == sorted(first.answer.split()) and plain.question == first.question
    m = make_dataset(tmp_path, small_photo, n=1)
    cfg = DataConfig(manifests=manifest_paths(m, ["iqa"]), ratios={"iqa": 1}, crop=48, iqa_min_short=16,
                     iqa_max_long=48, online=("iqa",), score_first=True)
    stream = SampleStream(cfg, vae_stride=8, vit_stride=8, degrade_fn=fake_degrade)
    answers = [s.items[-1].text for s in (stream[n] for n in range(40)) if "score" in s.items[-1].text]
    assert answers and all(a.startswith("Overall the quality is") for a in answers)


def test_iqa_tasks_and_verdict_loss(tmp_path, small_photo):
    from uare.data.packing import to_items

    m = make_dataset(tmp_path, small_photo, n=6)
    tasks = {json.loads(s)["task"] for s in (m / "manifest-iqa.jsonl").read_text().splitlines()}
    assert "score" in tasks and len(tasks) > 1   # so filtering the manifest lines is tested
    base = dict(manifests=manifest_paths(m, ["iqa"]), ratios={"iqa": 1}, crop=48, iqa_min_short=16,
                iqa_max_long=48, score_first=True)
    for online in ((), ("iqa",)):
        cfg = DataConfig(**base, online=online, iqa_tasks=("score",), iqa_loss="verdict")
        stream = SampleStream(cfg, vae_stride=8, vit_stride=8, degrade_fn=fake_degrade)
        samples = [stream[n] for n in range(30)]
        answers = [s.items[-1] for s in samples]
        assert all(a.text.startswith("Overall the quality is") for a in answers), online
        assert all(a.loss_prefix and a.text.startswith(a.loss_prefix) and a.loss_prefix.endswith(".")
                   for a in answers)
    # the verdict's tokens are the only targets; a word-level stand-in tokenizer
    vocab: dict[str, int] = {}
    enc = lambda t: [vocab.setdefault(w, len(vocab)) for w in t.split(" ")]  # noqa: E731
    text = to_items(samples[0], enc, lambda x: x, [False] * len(samples[0].items))[-1]
    assert text.loss and text.loss_len == len(answers[0].loss_prefix.split(" ")) < len(text.ids)
    # the default supervises the whole answer, and describe/compare keep theirs
    whole = SampleStream(DataConfig(**base, online=("iqa",)), vae_stride=8, vit_stride=8, degrade_fn=fake_degrade)
    assert all(not s.items[-1].loss_prefix for s in (whole[n] for n in range(30)))
    assert {s.items[-1].text.startswith("Overall") for s in (whole[n] for n in range(30))} == {True, False}
    # mixed: some scoring answers verdict only, some whole, the same for the same index
    mixed = SampleStream(DataConfig(**base, online=("iqa",), iqa_tasks=("score",), iqa_loss="mixed"),
                         vae_stride=8, vit_stride=8, degrade_fn=fake_degrade)
    heads = [mixed[n].items[-1].loss_prefix for n in range(30)]
    assert 8 <= sum(bool(h) for h in heads) <= 22
    assert all(h == "" or h.startswith("Overall the quality is") for h in heads)
    assert heads == [mixed[n].items[-1].loss_prefix for n in range(30)]


@pytest.mark.parametrize("kw, msg", [({"iqa_tasks": ("rate",)}, "iqa_tasks"), ({"iqa_tasks": ()}, "iqa_tasks"),
                                     ({"iqa_loss": "level"}, "iqa_loss"),
                                     ({"iqa_loss": "verdict", "score_first": False}, "score_first"),
                                     ({"iqa_loss": "mixed", "score_first": False}, "score_first")])
def test_iqa_options_are_checked(tmp_path, small_photo, kw, msg):
    m = make_dataset(tmp_path, small_photo, n=1)
    cfg = DataConfig(manifests=manifest_paths(m, ["iqa"]), ratios={"iqa": 1}, **kw)
    with pytest.raises(ValueError, match=msg):
        SampleStream(cfg, degrade_fn=fake_degrade)


def test_rescale_cuts_crops_from_larger_regions_shrunk(tmp_path):
    m = make_dataset(tmp_path, ramp(), n=1)
    kw = dict(manifests=manifest_paths(m, ["iqa"]), ratios={"iqa": 1}, crop=32,
              iqa_min_short=32, iqa_max_long=32, online=("iqa",))
    same = lambda im, preset, seed=0: (im, {"severity": {}, "steps": []})

    def spans(cfg):
        stream = SampleStream(cfg, vae_stride=8, vit_stride=8, degrade_fn=same)
        out = []
        for n in range(40):
            im = np.asarray(stream[n].items[0].image).astype(int)
            assert im.shape == (32, 32, 3)
            out.append(im[16, -1, 0] - im[16, 0, 0])
        return np.array(out)

    native, zoomed = spans(DataConfig(**kw)), spans(DataConfig(**kw, rescale=0.25))
    assert (np.abs(native - 62) <= 1).all()                # 31 px of a 2-per-px ramp
    assert zoomed.min() >= 58 and zoomed.max() > 150 and len(set(zoomed)) > 10
    assert np.array_equal(zoomed, spans(DataConfig(**kw, rescale=0.25)))   # still a function of n
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="rescale"):
            SampleStream(DataConfig(**kw, rescale=bad), degrade_fn=same)
