"""The 4-part analysis text of assessment-guided restoration (paper §3.3), from a record.

Parts: (1) user intent, (2) current quality analysis, (3) enhancement plan, (4) expected
result. Everything stated comes from the degradation record: each degradation present is
named with a severity word from the band its `severity` value falls in, nothing absent
is mentioned, and no image content is described (the record knows none).

Plan order. Image formation runs scene (haze, rain, low light) -> optics (blur) -> sensor
(noise) -> codec (JPEG), and the low-resolution copy is what the camera finally stores.
Undoing it therefore runs the other way: first remove codec blocks (they are the last,
sharp-edged layer and confuse every later estimate), then sensor noise (before any
brightening, which would amplify it, and before deblurring, which would sharpen it), then
optical blur, then the scene-level effects, and upscale last so that new detail is
synthesised on an already clean image.

Wording varies with the seed: the same record and seed always give the same text.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Mapping, Optional

from .instructions import degradation_types, is_high_order

# Severity bands (upper bound exclusive, last one closed) and the words allowed in each.
SEVERITY_BANDS = (
    (0.2, ("slight", "minor")),
    (0.45, ("mild", "modest")),
    (0.7, ("moderate", "medium")),
    (0.9, ("strong", "heavy")),
    (float("inf"), ("severe", "extreme")),
)

# Phrases naming each type; every phrase of a type holds that type's KEYWORD and no other
# type's keyword, so a reader (or a test) can tell which degradations a text names. No
# article: a phrase follows a severity word ("medium haze") or "the" ("remove the haze").
TYPE_PHRASES = {
    "jpeg": ("JPEG compression artifacts", "JPEG blocking artifacts", "JPEG artifacts"),
    "noise": ("noise", "sensor noise", "grainy noise"),
    "sinc": ("ringing artifacts", "ringing around edges"),
    "blur": ("blur", "blurring", "optical blur"),
    "haze": ("haze", "atmospheric haze", "hazy veil"),
    "rain": ("rain streaks", "streaks of falling rain"),
    "raindrop": ("raindrops on the lens", "raindrops"),
    "lowlight": ("underexposure", "low-light underexposure", "dark underexposure"),
    "downsample": ("low resolution", "resolution loss"),
}
KEYWORD = {
    "jpeg": "jpeg", "noise": "noise", "sinc": "ringing", "blur": "blur",
    "haze": "haz", "rain": "streak", "raindrop": "raindrop", "lowlight": "underexpos",
    "downsample": "resolution",
}
# Inverse order of image formation (module docstring).
PLAN_ORDER = ("jpeg", "noise", "sinc", "blur", "haze", "rain", "raindrop",
              "lowlight", "downsample")
ACTIONS = {
    "jpeg": ("remove the {p}", "suppress the {p}"),
    "noise": ("denoise to remove the {p}", "suppress the {p} while keeping texture"),
    "sinc": ("suppress the {p}",),
    "blur": ("deblur to undo the {p}", "recover sharp edges lost to {p}"),
    "haze": ("remove the {p} to restore contrast", "dehaze to lift the {p}"),
    "rain": ("remove the {p}", "derain to erase the {p}"),
    "raindrop": ("remove the {p}", "clear away the {p}"),
    "lowlight": ("brighten the image to correct the {p}", "lift the exposure to fix the {p}"),
    "downsample": ("upscale{scale} to recover detail lost to {p}",
                   "super-resolve{scale} to compensate for {p}"),
}
RESULTS = {
    "jpeg": "smooth gradients without block edges",
    "noise": "clean flat regions",
    "sinc": "clean edges without ripples",
    "blur": "crisp edges and fine detail",
    "haze": "clear contrast and natural colours",
    "rain": "a scene free of rain streaks",
    "raindrop": "an unobstructed view without raindrops",
    "lowlight": "balanced brightness with visible shadow detail",
    "downsample": "a higher-resolution image with plausible fine detail",
}
INTENTS = (
    "The user wants this image restored to a clean, high-quality version.",
    "The user asks for an enhanced version of this image with its defects removed.",
    "The goal is to improve the visual quality of this image.",
    "The user would like the degradations in this image corrected.",
)
QUALITY_OPENERS = (
    "The image suffers from {items}.",
    "The current image shows {items}.",
    "Its quality is limited by {items}.",
    "I can see {items} in this image.",
)
PLAN_OPENERS = ("In order:", "Step by step:", "The steps, in order:")
RESULT_OPENERS = ("The result should show {items}.", "The restored image should have {items}.",
                  "After enhancement the image should have {items}.")


@dataclass(frozen=True)
class Analysis:
    """The four parts; `text` joins them in the order the paper gives."""
    intent: str
    quality: str
    plan: str
    expected: str

    @property
    def text(self) -> str:
        return "\n".join([f"1. User intent: {self.intent}", f"2. Current quality: {self.quality}",
                          f"3. Enhancement plan: {self.plan}", f"4. Expected result: {self.expected}"])


def severity_words(value: float) -> tuple[str, ...]:
    """The words allowed for a severity in [0, 1]."""
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"severity {value} is outside [0, 1]")
    for upper, words in SEVERITY_BANDS:
        if value < upper:
            return words
    return SEVERITY_BANDS[-1][1]


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _named(record: Mapping) -> list[str]:
    types = [t for t in degradation_types(record) if t in TYPE_PHRASES]
    if not types:
        raise ValueError(f"record of preset {record.get('preset')!r} names no known degradation")
    return types


def _quality(record: Mapping, types: list[str], phrases: dict, rng: random.Random) -> str:
    sev = record.get("severity", {})
    items = []
    for t in types:  # the order they were applied, which is the order they accumulate
        if t in sev:
            items.append(f"{rng.choice(severity_words(sev[t]))} {phrases[t]}")
        else:  # no severity recorded: name it, claim no strength
            items.append(phrases[t])
    return rng.choice(QUALITY_OPENERS).format(items=_join(items))


def _plan(record: Mapping, types: list[str], phrases: dict, rng: random.Random) -> str:
    ordered = [t for t in PLAN_ORDER if t in types]
    scale = int(record.get("scale", 1) or 1)
    scale_txt = f" {scale}x" if scale > 1 else ""
    steps = [rng.choice(ACTIONS[t]).format(p=phrases[t], scale=scale_txt) for t in ordered]
    return rng.choice(PLAN_OPENERS) + " " + " ".join(
        f"({i}) {s};" if i < len(steps) else f"({i}) {s}." for i, s in enumerate(steps, 1))


def analysis(record: Mapping, seed: int = 0) -> Analysis:
    """The 4-part analysis for a degradation record; same record and seed, same text."""
    rng = random.Random(f"analysis:{seed}")
    types = _named(record)
    phrases = {t: rng.choice(TYPE_PHRASES[t]) for t in types}
    intent = rng.choice(INTENTS)
    if is_high_order(record):
        intent += " It carries a mix of several degradations."
    results = [RESULTS[t] for t in PLAN_ORDER if t in types]
    expected = rng.choice(RESULT_OPENERS).format(items=_join(results))
    return Analysis(intent, _quality(record, types, phrases, rng),
                    _plan(record, types, phrases, rng), expected)


def describe_degradations(record: Mapping, seed: int = 0) -> str:
    """One sentence naming each degradation with its severity word (IQA descriptions)."""
    rng = random.Random(f"describe:{seed}")
    types = _named(record)
    phrases = {t: rng.choice(TYPE_PHRASES[t]) for t in types}
    return _quality(record, types, phrases, rng)


def mentioned_types(text: str) -> set[str]:
    """Degradation types a text names, by their keywords (the inverse of the phrases)."""
    low = text.lower()
    return {t for t, k in KEYWORD.items() if k in low}


def plan_types(text: Optional[str]) -> list[str]:
    """Types in the order a plan text names them (first keyword occurrence)."""
    low = (text or "").lower()
    hits = [(low.find(k), t) for t, k in KEYWORD.items() if k in low]
    return [t for _, t in sorted(hits)]
