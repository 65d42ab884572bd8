"""Training data: prompt pools, analysis texts, IQA samples, score loaders, manifests,
packing and on-the-fly samples (paper §3.3)."""
from .instructions import (ANALYZE_INSTRUCTIONS, analyze_instruction, simple_instruction,
                           task_for_record)
from .iqa import (IQASample, comparison_sample, description_sample, pseudo_opinion_score,
                  quality_level, scoring_sample, synthetic_comparison_sample,
                  synthetic_scoring_sample)
from .responses import Analysis, analysis, describe_degradations
from .scores import DATASETS, ScoredImage, ScoreFileError, load_scores

__all__ = [
    "ANALYZE_INSTRUCTIONS", "analyze_instruction", "simple_instruction", "task_for_record",
    "IQASample", "comparison_sample", "description_sample", "pseudo_opinion_score",
    "quality_level", "scoring_sample", "synthetic_comparison_sample", "synthetic_scoring_sample",
    "Analysis", "analysis", "describe_degradations", "DATASETS", "ScoredImage",
    "ScoreFileError", "load_scores",
]
