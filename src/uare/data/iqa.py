"""IQA training samples (paper §3.3): scoring, degradation description and comparison.

A sample here is plain text plus the roles of its images; `dataset.py` turns it into model
items. For synthetic data the score is a *pseudo-opinion score* (documented below); for
real databases it is the published MOS mapped to [1, 5] (`scores.py`).

Pseudo-opinion score (synthetic data). Degradations combine like independent
impairments: with severities s_i in [0, 1] the remaining quality is q = prod(1 - s_i),
so one severe defect is enough to make an image bad and mild defects add up. The
record-only score is 1 + 4 q. When a full-reference SSIM against the clean source is
known it measures what the record cannot (how visible the defect is on this content), and
the score becomes the mean of 1 + 4 q and 1 + 4 SSIM. A clean image scores 5.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Mapping, Optional

import numpy as np

from .responses import describe_degradations

# Level words of `uare assess`, with the lower edge of each band of [1, 5].
LEVELS = (("excellent", 4.2), ("good", 3.4), ("fair", 2.6), ("poor", 1.8), ("bad", 1.0))

SCORE_QUESTIONS = (
    "How would you rate the quality of this image?",
    "Rate the quality of this image on a scale from 1 to 5.",
    "What is the quality score of this image?",
    "Can you assess the image quality and give a score?",
    "Evaluate this image's quality and score it.",
    "Give this picture a quality score between 1 and 5.",
)
DESCRIBE_QUESTIONS = (
    "Describe the degradations in this image.",
    "What quality problems does this image have?",
    "Which distortions can you see in this image, and how strong are they?",
    "Describe the quality of this image.",
)
COMPARE_QUESTIONS = (
    "Given the reference image, compare the two images: which is better?",
    "Compare image A and image B against the reference in fidelity and perceptual quality.",
    "Which of the two results is better relative to the reference?",
)
CLEAN_DESCRIPTIONS = ("The image is clean, with no visible degradation.",
                      "No noticeable distortion is present in this image.")


def quality_level(score: float) -> str:
    """Level word for a score in [1, 5] (excellent >= 4.2 > good >= 3.4 > ... > bad)."""
    for name, lower in LEVELS:
        if score >= lower:
            return name
    return "bad"


def pseudo_opinion_score(record: Optional[Mapping], ssim: Optional[float] = None) -> float:
    """Score in [1, 5] for a synthetic image from its degradation record (None = clean)
    and, optionally, its SSIM against the clean source (module docstring)."""
    sev = (record or {}).get("severity", {})
    for t, s in sev.items():
        if not 0.0 <= float(s) <= 1.0:
            raise ValueError(f"severity of {t} is {s}, outside [0, 1]")
    q = math.prod(1.0 - float(s) for s in sev.values())
    score = 1.0 + 4.0 * q
    if ssim is not None:
        score = 0.5 * score + 0.5 * (1.0 + 4.0 * min(max(float(ssim), 0.0), 1.0))
    return round(score, 2)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 HxWx3 arrays of the same shape (RGB, no crop)."""
    if a.shape != b.shape:
        raise ValueError(f"PSNR needs equal shapes, got {a.shape} and {b.shape}")
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10.0 * np.log10(255.0 ** 2 / mse))


@dataclass
class IQASample:
    """Question and answer texts plus the image roles in order (e.g. ["image"] or
    ["reference", "A", "B"]); `score` is kept for evaluation and packing statistics."""
    kind: str
    question: str
    answer: str
    images: list[str] = field(default_factory=lambda: ["image"])
    score: Optional[float] = None
    verdict: Optional[str] = None   # scoring answers: "Overall the quality is <level>, score <s>."


def scoring_sample(score: float, description: str, seed: int = 0, score_first: bool = False) -> IQASample:
    """Answer = description + level + score, e.g. '... Overall the quality is fair, score
    2.85.'; with score_first the level and score open the answer and the description
    follows (Q-Align's layout: the level is then read from the image and the question
    alone, not after the model's own description)."""
    if not 1.0 <= score <= 5.0:
        raise ValueError(f"score {score} is outside [1, 5]")
    rng = random.Random(f"score:{seed}")
    verdict = f"Overall the quality is {quality_level(score)}, score {score:.2f}."
    answer = f"{verdict} {description}" if score_first else f"{description} {verdict}"
    return IQASample("score", rng.choice(SCORE_QUESTIONS), answer.strip(), score=score, verdict=verdict)


def synthetic_scoring_sample(record: Optional[Mapping], seed: int = 0,
                             ssim: Optional[float] = None, score_first: bool = False) -> IQASample:
    return scoring_sample(pseudo_opinion_score(record, ssim), _describe(record, seed), seed, score_first)


def description_sample(record: Optional[Mapping], seed: int = 0) -> IQASample:
    rng = random.Random(f"describe-q:{seed}")
    return IQASample("describe", rng.choice(DESCRIBE_QUESTIONS), _describe(record, seed),
                     score=pseudo_opinion_score(record))


def _describe(record: Optional[Mapping], seed: int) -> str:
    if not record or not record.get("severity") and not record.get("steps"):
        return random.Random(f"clean:{seed}").choice(CLEAN_DESCRIPTIONS)
    return describe_degradations(record, seed)


def comparison_sample(fidelity: tuple[float, float], quality: tuple[float, float],
                      descriptions: tuple[str, str], seed: int = 0) -> IQASample:
    """Reference + candidates A and B. `fidelity` = full-reference measure of A and B
    (higher = closer to the reference, e.g. PSNR); `quality` = no-reference score in
    [1, 5]. The answer says which wins on each; when the two winners differ the overall
    preference follows fidelity, because a restoration must not invent content."""
    rng = random.Random(f"compare:{seed}")
    fid = "A" if fidelity[0] >= fidelity[1] else "B"
    per = "A" if quality[0] >= quality[1] else "B"
    overall = fid
    lines = [f"Image A: {descriptions[0]} Its quality is {quality_level(quality[0])}.",
             f"Image B: {descriptions[1]} Its quality is {quality_level(quality[1])}.",
             f"In fidelity to the reference, image {fid} is better.",
             f"In perceptual quality, image {per} is better.",
             f"Overall, image {overall} is better." if fid == per else
             f"Overall, image {overall} is preferred for its fidelity."]
    return IQASample("compare", rng.choice(COMPARE_QUESTIONS), " ".join(lines),
                     images=["reference", "A", "B"])


def synthetic_comparison_sample(clean: np.ndarray, a: tuple[np.ndarray, Mapping],
                                b: tuple[np.ndarray, Mapping], seed: int = 0) -> IQASample:
    """Comparison of two degraded versions (array, record) of the clean reference;
    fidelity is PSNR to the reference, perceptual quality the pseudo-opinion score."""
    fid = (psnr(a[0], clean), psnr(b[0], clean))
    qual = (pseudo_opinion_score(a[1]), pseudo_opinion_score(b[1]))
    return comparison_sample(fid, qual, (_describe(a[1], seed), _describe(b[1], seed + 1)), seed)
