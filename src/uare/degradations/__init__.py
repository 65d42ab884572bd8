"""Synthetic degradations: how UARE makes its low-quality training inputs and the
records its analysis text is written from.

    from uare.degradations import degrade
    lq, record = degrade(image, "multi:lowlight+noise", seed=0)

See docs/design.md ("Degradation record") for the record format.
"""
from .presets import (MIXED_COMBOS, PRESETS, SINGLE_TYPES, TYPE_ORDER, PresetError, degrade,
                      parse_preset, plan, sample_preset)
from .realesrgan import (DEFAULT_CONFIG, RealESRGANConfig, StageConfig, realesrgan_batch,
                         sample_realesrgan)

__all__ = ["degrade", "plan", "parse_preset", "sample_preset", "PRESETS", "SINGLE_TYPES",
           "MIXED_COMBOS", "TYPE_ORDER", "PresetError", "realesrgan_batch", "sample_realesrgan",
           "RealESRGANConfig", "StageConfig", "DEFAULT_CONFIG"]
