"""Instruction pools, 4-part analysis texts and IQA samples agree with their records."""
from __future__ import annotations

import itertools
import random
import re

import pytest

from uare.data import instructions as ins
from uare.data import iqa, responses as rs

ALL_TYPES = ["blur", "noise", "jpeg", "haze", "rain", "raindrop", "lowlight", "downsample"]


def make_record(severity: dict, preset: str = "", scale: int = 1) -> dict:
    """A hand-made record in the design.md format (steps in dict order)."""
    steps = [{"type": t, "op": "x", "params": {}} for t in severity]
    return {"preset": preset or ("multi:" + "+".join(severity)), "seed": 0, "scale": scale,
            "input_size": [64, 64], "output_size": [64, 64], "steps": steps,
            "severity": dict(severity)}


def records():
    """Every single type at several severities, the FoundIR mixtures, and one high-order."""
    out = []
    for t, s in itertools.product(ALL_TYPES, (0.05, 0.3, 0.55, 0.8, 1.0)):
        out.append(make_record({t: s}, preset=f"single:{t}"))
    r = random.Random(1)
    for combo in (("blur", "noise"), ("lowlight", "haze"), ("rain", "haze"),
                  ("lowlight", "blur", "noise"), ("noise", "jpeg"), ("lowlight", "noise", "jpeg")):
        out.append(make_record({t: r.random() for t in combo}))
    hi = make_record({"blur": 0.4, "downsample": 0.7, "noise": 0.2, "jpeg": 0.5, "sinc": 0.3},
                     preset="realesrgan", scale=4)
    out.append(hi)
    return out


def test_task_follows_design_table():
    assert ins.task_for_record(make_record({"noise": 0.3})) == "denoise"
    assert ins.task_for_record(make_record({"raindrop": 0.3})) == "derain"
    assert ins.task_for_record(make_record({"lowlight": 0.3, "noise": 0.3})) == "mixed"
    assert ins.task_for_record(make_record({"blur": 0.3}, preset="realesrgan")) == "sr"
    with pytest.raises(ValueError, match="unknown types"):
        ins.task_for_record(make_record({"fog": 0.3}))


def test_simple_instruction_names_the_degradations_and_high_order_is_fixed():
    rng = random.Random(0)
    text = ins.simple_instruction(make_record({"lowlight": 0.5, "noise": 0.2}), rng)
    assert "low-light" in text and "noise" in text and text.lower().startswith(("enhance", "restore", "please"))
    assert ins.simple_instruction(make_record({"blur": 1}, preset="realesrgan"), rng) == \
        "enhance this mix-degraded image."


def test_at_least_twenty_distinct_analyse_then_restore_prompts():
    assert len(set(ins.ANALYZE_INSTRUCTIONS)) >= 20


@pytest.mark.parametrize("record", records(), ids=lambda r: r["preset"] + str(list(r["severity"].values())[0])[:4])
def test_analysis_names_exactly_the_recorded_degradations_with_their_severity(record):
    for seed in range(3):
        a = rs.analysis(record, seed)
        present = {t for t in record["severity"]}
        assert rs.mentioned_types(a.text) == present, a.text
        # every degradation appears in the quality part as "<severity word> <phrase>"
        for t, s in record["severity"].items():
            allowed = rs.severity_words(s)
            phrases = rs.TYPE_PHRASES[t]
            pattern = r"\b(\w+) (?:%s)" % "|".join(re.escape(p) for p in phrases)
            words = re.findall(pattern, a.quality)
            assert words and words[0] in allowed, (t, s, a.quality)


@pytest.mark.parametrize("record", records()[-7:], ids=lambda r: r["preset"])
def test_plan_runs_codec_then_noise_then_optics_then_scene_then_upscale(record):
    order = rs.plan_types(rs.analysis(record, 0).plan)
    expected = [t for t in rs.PLAN_ORDER if t in record["severity"]]
    assert order == expected


def test_phrases_compose_with_severity_words_and_articles():
    """Phrases come after a severity word or "the": one with its own article would read
    "medium a hazy veil" or "remove the a hazy veil" (the shipped model learned the first)."""
    for t, phrases in rs.TYPE_PHRASES.items():
        assert not [p for p in phrases if p.split()[0].lower() in ("a", "an", "the")], t
    words = "|".join(["the"] + [w for _, ws in rs.SEVERITY_BANDS for w in ws])
    bad = re.compile(rf"\b({words}) (a|an|the)\b", re.IGNORECASE)
    for record, seed in itertools.product(records(), range(6)):
        text = rs.analysis(record, seed).text + " " + rs.describe_degradations(record, seed)
        assert not bad.search(text), text


def test_wording_varies_by_seed_and_repeats_for_the_same_seed():
    rec = make_record({"lowlight": 0.6, "blur": 0.3, "noise": 0.8})
    texts = {rs.analysis(rec, s).text for s in range(12)}
    assert len(texts) >= 6
    assert rs.analysis(rec, 5).text == rs.analysis(rec, 5).text


def test_severity_outside_unit_interval_is_refused():
    with pytest.raises(ValueError, match="outside"):
        rs.analysis(make_record({"noise": 1.5}), 0)


def test_pseudo_opinion_score_is_monotone_in_severity_and_clean_is_five():
    assert iqa.pseudo_opinion_score(None) == 5.0
    scores = [iqa.pseudo_opinion_score(make_record({"noise": s})) for s in (0, 0.2, 0.5, 0.9, 1)]
    assert scores == sorted(scores, reverse=True) and scores[-1] == 1.0
    two = iqa.pseudo_opinion_score(make_record({"noise": 0.5, "blur": 0.5}))
    assert two < scores[2]  # impairments add up
    assert iqa.pseudo_opinion_score(make_record({"noise": 0.2}), ssim=0.3) < scores[1]


def test_scoring_answer_states_the_level_of_its_score():
    s = iqa.synthetic_scoring_sample(make_record({"haze": 0.8}), seed=3)
    level = iqa.quality_level(s.score)
    assert f"quality is {level}, score {s.score:.2f}." in s.answer
    assert rs.mentioned_types(s.answer) == {"haze"}
    assert iqa.quality_level(4.5) == "excellent" and iqa.quality_level(1.0) == "bad"


def test_comparison_labels_follow_fidelity_and_quality(small_photo):
    import numpy as np

    clean = small_photo
    noisy_a = np.clip(clean + np.random.default_rng(0).normal(0, 3, clean.shape), 0, 255).astype(np.uint8)
    noisy_b = np.clip(clean + np.random.default_rng(1).normal(0, 30, clean.shape), 0, 255).astype(np.uint8)
    s = iqa.synthetic_comparison_sample(clean, (noisy_a, make_record({"noise": 0.1})),
                                        (noisy_b, make_record({"noise": 0.7})), seed=0)
    assert "In fidelity to the reference, image A is better." in s.answer
    assert "In perceptual quality, image A is better." in s.answer
    assert s.images == ["reference", "A", "B"]
    split = iqa.comparison_sample((30.0, 25.0), (2.0, 4.0), ("x.", "y."))
    assert "fidelity to the reference, image A" in split.answer
    assert "perceptual quality, image B" in split.answer


def test_texts_agree_with_records_of_the_real_degradation_presets(small_photo):
    from uare.data.build import MULTI_PRESETS, SINGLE_TYPES
    from uare.degradations import degrade

    presets = [f"single:{t}" for t in SINGLE_TYPES] + list(MULTI_PRESETS) + ["realesrgan", "single:downsample"]
    img = small_photo[:64, :64]
    for i, p in enumerate(presets):
        _, rec = degrade(img, p, seed=i)
        a = rs.analysis(rec, seed=i)
        assert rs.mentioned_types(a.text) == set(rec["severity"]), (p, a.text)
        assert rs.plan_types(a.plan) == [t for t in rs.PLAN_ORDER if t in rec["severity"]]
        ins.task_for_record(rec)  # every preset maps to a task
