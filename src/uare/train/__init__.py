"""Two-stage training (paper §3.4, Table A.1): recipes, trainer, checkpoints, FSDP2."""
from __future__ import annotations

from typing import Callable, Optional

import torch

from .recipe import Recipe, RecipeError, load_recipe


def _tokenizer(model, vocab_size: int):
    """The model's tokenizer, or a byte-level BPE trained on the prompt and answer pools
    (deterministic, so every rank and every resume gets the same one)."""
    if getattr(model, "tokenizer", None) is not None:
        return model.tokenizer
    from ..data import instructions, iqa, responses
    from ..tokenizer import train_tokenizer

    texts = list(instructions.ANALYZE_INSTRUCTIONS) + list(instructions.SIMPLE_TEMPLATES)
    texts += list(iqa.SCORE_QUESTIONS + iqa.DESCRIBE_QUESTIONS + iqa.COMPARE_QUESTIONS)
    for pool in (responses.TYPE_PHRASES, responses.ACTIONS):
        texts += [p for v in pool.values() for p in v]
    texts += list(responses.INTENTS) + list(responses.RESULTS.values())
    return train_tokenizer(texts, vocab_size)


def build_model_for(recipe: Recipe, device):
    from ..model import UAREModel, build_model

    torch.manual_seed(recipe.train.seed)  # the same initial weights on every rank
    if recipe.model.init:
        return UAREModel.from_pretrained(recipe.model.init)
    return build_model(recipe.model.preset)


def make_trainer(recipe: Recipe, model=None, env=None, degrade_fn: Optional[Callable] = None,
                 progress: bool = True):
    """Model (unless given), data stream, objective, sharding and trainer for a recipe."""
    from ..data.dataset import SampleStream
    from ..data.packing import DropoutConfig
    from .objective import Objective
    from .parallel import DistEnv, parallelize
    from .trainer import Trainer

    env = env or DistEnv.from_environment()
    model = model if model is not None else build_model_for(recipe, env.device)
    model = model.to(env.device)
    tok = _tokenizer(model, model.cfg.llm.vocab_size)
    cfg = model.cfg
    d = recipe.data
    stream = SampleStream(d, vae_stride=cfg.vae.downsample * cfg.latent_patch_size,
                          vit_stride=cfg.vit.stride, degrade_fn=degrade_fn)
    obj = Objective(model, tok, stream, d.samples_per_step, d.max_tokens_per_pack,
                    DropoutConfig(d.cfg_text_drop, d.cfg_vit_drop, d.cfg_vae_drop),
                    recipe.loss.timestep_shift, recipe.loss.ce_weight, recipe.loss.mse_weight,
                    d.seed, env.rank, env.world, workers=d.workers)
    parallelize(model, env, recipe.parallel)  # sharding makes new parameter objects...
    return Trainer(recipe, model, obj, env, progress=progress)  # ...so the optimizer comes after


__all__ = ["Recipe", "RecipeError", "load_recipe", "make_trainer"]
