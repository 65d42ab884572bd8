"""Instruction pools for restoration training (paper §3.3, Fig. A.2).

Two kinds of prompt:
- simple restoration prompts, one per task ("enhance this image with low-light."), and the
  high-order prompt "enhance this mix-degraded image.";
- analyse-then-restore prompts, where the model must first write its 4-part analysis.

Choices are drawn with a `random.Random` seeded by the caller, so a sample's text is a
pure function of its recorded seed.
"""
from __future__ import annotations

import random
from typing import Mapping

# Restoration task for each degradation type (docs/design.md, "Degradation record").
TASK_OF_TYPE = {
    "blur": "deblur", "noise": "denoise", "jpeg": "dejpeg", "haze": "dehaze",
    "rain": "derain", "raindrop": "derain", "lowlight": "lowlight", "downsample": "sr",
}
# Types that only occur inside Real-ESRGAN records; they never name a task of their own.
HIGH_ORDER_ONLY = ("sinc",)
# Steps that prepare the clean image rather than degrade it (Real-ESRGAN sharpens its GT
# before degrading it): never a defect of the LQ image to describe.
TARGET_SIDE_TYPES = ("sharpen",)

# The noun phrase a simple prompt uses for each type ("enhance this image with <phrase>").
DEGRADATION_PHRASE = {
    "blur": "blur", "noise": "noise", "jpeg": "JPEG artifacts", "haze": "haze",
    "rain": "rain streaks", "raindrop": "raindrops", "lowlight": "low-light",
    "downsample": "low resolution",
}

HIGH_ORDER_INSTRUCTION = "enhance this mix-degraded image."

SIMPLE_TEMPLATES = (
    "enhance this image with {deg}.",
    "Enhance this image with {deg}.",
    "restore this image with {deg}.",
    "Please enhance this image with {deg}.",
)

ANALYZE_INSTRUCTIONS = (
    "Enhance the input image. Provide a brief analysis of defects and the target appearance, "
    "outline the main steps to address them, then apply the enhancements and return the "
    "improved image.",
    "Analyze the image quality and enhance it.",
    "Look at this image, explain what is wrong with its quality, plan the fixes, then return "
    "the enhanced image.",
    "First assess the defects of this photo, then restore it.",
    "Describe the quality problems of this image, say how you will fix them, and output the "
    "restored result.",
    "Evaluate the degradations in this picture, propose an enhancement plan, and produce the "
    "improved picture.",
    "Please analyze this image's quality issues and then enhance it accordingly.",
    "Give a short quality analysis of the input, list the restoration steps, and then apply "
    "them.",
    "Diagnose what degrades this image, plan a restoration, and return the cleaned-up image.",
    "Inspect this image for artifacts, explain your enhancement strategy, then enhance it.",
    "Assess the current quality of this image, state the intended result, and restore it.",
    "Identify the defects in this image, outline how to remove them, and show the enhanced "
    "version.",
    "Explain what limits the quality of this photo, describe the target look, then improve "
    "it.",
    "Analyze, plan, and enhance: tell me what is wrong with this image and fix it.",
    "Review the image quality, summarize the problems, describe the steps to correct them, and "
    "return the corrected image.",
    "Before enhancing this image, briefly analyze its defects and your plan; then enhance it.",
    "Check this picture for quality problems, describe the fix, and deliver an improved "
    "picture.",
    "Study the degradations present in this image, decide on a restoration order, and restore "
    "it.",
    "What is degrading this image? Analyze it, plan the enhancement, then produce the result.",
    "Perform a quality analysis of the input image followed by a suitable enhancement.",
    "Provide a defect analysis and an enhancement plan for this image, then carry the plan out.",
    "Carefully evaluate this image's quality, then enhance it and describe the expected result.",
    "Analyze the image quality and enhance.",
    "Think about what makes this image look bad, plan the repair, and return the repaired "
    "image.",
)


def degradation_types(record: Mapping) -> list[str]:
    """Distinct degradation types of a record, in the order they were applied."""
    seen: list[str] = []
    for step in record.get("steps", []):
        t = step.get("type")
        if t and t not in seen and t not in TARGET_SIDE_TYPES:
            seen.append(t)
    if not seen:  # a record may carry only its severity table
        seen = list(record.get("severity", {}))
    return seen


def is_high_order(record: Mapping) -> bool:
    return str(record.get("preset", "")).startswith("realesrgan")


def task_for_record(record: Mapping) -> str:
    """The restoration task a record calls for: one type -> its task, several -> mixed,
    a Real-ESRGAN record -> sr (docs/design.md)."""
    if is_high_order(record):
        return "sr"
    types = [t for t in degradation_types(record) if t not in HIGH_ORDER_ONLY]
    if not types:
        raise ValueError(f"record of preset {record.get('preset')!r} has no degradation steps")
    tasks = {TASK_OF_TYPE[t] for t in types if t in TASK_OF_TYPE}
    unknown = [t for t in types if t not in TASK_OF_TYPE]
    if unknown:
        raise ValueError(f"record of preset {record.get('preset')!r} has unknown types {unknown}")
    return tasks.pop() if len(tasks) == 1 else "mixed"


def _join(words: list[str]) -> str:
    if len(words) <= 2:
        return " and ".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def simple_instruction(record: Mapping, rng: random.Random) -> str:
    """The plain restoration prompt of stage 1 for a degradation record."""
    if is_high_order(record):
        return HIGH_ORDER_INSTRUCTION
    types = [t for t in degradation_types(record) if t not in HIGH_ORDER_ONLY]
    phrases = [DEGRADATION_PHRASE[t] for t in types if t in DEGRADATION_PHRASE]
    if not phrases:
        raise ValueError(f"record of preset {record.get('preset')!r} names no known degradation")
    return rng.choice(SIMPLE_TEMPLATES).format(deg=_join(phrases))


def analyze_instruction(rng: random.Random) -> str:
    """One of the analyse-then-restore paraphrases."""
    return rng.choice(ANALYZE_INSTRUCTIONS)
