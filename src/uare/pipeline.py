"""`UARE`: assess, compare and restore images with one model (paper §3.2, bagel-facts §3).

The model does the arithmetic (KV-cached prefill, decode steps, velocities); this module
lays out the contexts of each flow and hands them to the pure loops of `uare.sampling`:
- assess: ViT(image) + question -> answer text; the score is the probability-weighted
  mean over the five level words read at "Overall the quality is" (Q-Align style).
- compare: [ViT(ref)] + ViT(A) + ViT(B) + question -> answer; the probability comes from
  the A/B token probabilities read at "Overall, image".
- restore: clean VAE + ViT of the input + instruction -> noisy latents -> image, with CFG
  over three contexts: full, no text (context right after the images), no image (the
  texts only). `analyze` first generates the 4-part analysis into the full context.
"""
from __future__ import annotations

import math
import os
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from PIL import Image

from .color_fix import color_fix as apply_color_fix
from .data.instructions import ANALYZE_INSTRUCTIONS, DEGRADATION_PHRASE, HIGH_ORDER_INSTRUCTION, TASK_OF_TYPE
from .data.iqa import COMPARE_QUESTIONS, SCORE_QUESTIONS, quality_level
from .data.responses import mentioned_types
from .fidelity import auto_mix
from .imageio import MAX_PIXELS, ImageError, ImageLike, load_image
from .model.patches import latents_to_tokens, tokens_to_latents
from .model.branch import FILENAME as BRANCH_FILE, check_ensemble, load_branches, self_ensemble
from .model.refiner import FILENAME as REFINER_FILE, load_refiner
from .sampling import (
    LEVELS, GuidanceConfig, TextConfig, check_mix, check_strength, check_temperature, euler_sample, flow_timesteps,
    generate_tokens, guided_velocity, level_probabilities, level_score,
)
from .tiling import TileConfig, num_tiles, restore_any_size, round_up

TASKS = ("auto", "sr", "denoise", "deblur", "dejpeg", "dehaze", "derain", "lowlight", "mixed")
BRANCH_TYPES = tuple(TASK_OF_TYPE)   # what a pixel branch can be for: one degradation type
# degradations whose removal leaves the image's tone and colour as they are: not haze and
# low light (their restoration is the low band), nor rain streaks (a screen blend: they
# add light, so the clean image is darker)
TONE_KEEPING_TYPES = ("downsample", "noise", "blur", "jpeg", "raindrop")
TYPE_OF_TASK = {"denoise": "noise", "deblur": "blur", "dejpeg": "jpeg", "dehaze": "haze",
                "derain": "rain", "lowlight": "lowlight"}
# Prompts, in one place. Answers hold "Overall the quality is <level>, score <s>." and
# "Overall, image <A|B> ..." (uare.data.iqa), so the level / winner is read right there
# and the answer then says what was read (UARE._answer_and_read).
ASSESS_QUESTION = SCORE_QUESTIONS[0]
SCORE_PREFIX = "Overall the quality is"
COMPARE_QUESTION_REF = COMPARE_QUESTIONS[1]
COMPARE_QUESTION = "Compare image A and image B in perceptual quality: which is better?"
COMPARE_PREFIX = "Overall, image"
ANALYZE_INSTRUCTION = ANALYZE_INSTRUCTIONS[0]
DECODE_CHUNK = 4   # canvases per autoencoder decode (see UARE._decode)
# a pixel branch's tiles: plain convolutions need no latent grid, only room (16 px keeps
# JPEG's 8 px blocks where the codec put them; 512 px of 48 channels at half size: 12 MB)
BRANCH_TILES = TileConfig(tile=512, overlap=32, grid=16)
DEFAULT_FOLDERS = (Path(__file__).resolve().parent / "weights" / "uare-tiny",
                   Path(__file__).resolve().parents[2] / "weights" / "uare-tiny")


COMPARE_METHODS = ("auto", "answer", "scores")


def check_compare_method(method: str, what: str = "compare method") -> str:
    if method not in COMPARE_METHODS:
        raise ValueError(f"{what} must be one of {', '.join(COMPARE_METHODS)}, got {method!r}")
    return method


def _verdict_of_levels(logp: torch.Tensor) -> str:
    """What follows SCORE_PREFIX for the level reading: its level and expected score."""
    score = level_score(logp, range(len(LEVELS)))
    return f" {quality_level(score)}, score {score:.2f}."


JPEG_BLOCK = 8


def _on_phase(start: int, room: int, phase: int) -> int:
    """The start `phase` pixels into the JPEG block that holds `start` (the block before
    where that passes `room`); `start` itself where no start in 0..room has that phase."""
    s = start - start % JPEG_BLOCK + phase
    if s > room:
        s -= JPEG_BLOCK
    return s if 0 <= s <= room else start


def _mean_reading(readings: list[torch.Tensor]) -> torch.Tensor:
    """Pool level readings (log P per word) by averaging their probabilities over the words."""
    return torch.stack([torch.softmax(r.float(), 0) for r in readings]).mean(0).log()


def _winner(logp: torch.Tensor) -> tuple[str, float]:
    """The A/B reading's likelier image and its probability (A on a tie)."""
    p_a = float(level_probabilities(logp, [0, 1])[0])
    return ("A", p_a) if p_a >= 0.5 else ("B", 1.0 - p_a)


def _verdict_of_ab(logp: torch.Tensor) -> str:
    """What follows COMPARE_PREFIX for the A/B reading: the likelier one."""
    return " " + _winner(logp)[0]


def _swap_ab(logp: torch.Tensor) -> torch.Tensor:
    """An A/B reading taken with the images in the other order, as a reading of this order."""
    return logp.flip(0)


def _level_moments(logp: torch.Tensor) -> tuple[float, float]:
    """Mean and variance of the score (levels 1..5) under a level reading."""
    p = torch.softmax(logp.float(), 0)
    s = torch.arange(1, p.numel() + 1, dtype=p.dtype)
    mean = float((p * s).sum())
    return mean, float((p * (s - mean) ** 2).sum())


def _p_first_better(a: torch.Tensor, b: torch.Tensor) -> float:
    """P(image A's quality > image B's) from their level readings: Thurstone's case with
    each image's own spread, Phi((mean_A - mean_B) / sqrt(var_A + var_B))."""
    (ma, va), (mb, vb) = _level_moments(a), _level_moments(b)
    spread = math.sqrt(va + vb)
    if spread < 1e-12:
        return 0.5 if ma == mb else float(ma > mb)
    return 0.5 * (1.0 + math.erf((ma - mb) / (spread * math.sqrt(2.0))))


class ModelLoadError(ValueError):
    """No usable model at the given (or default) place; the message says what to pass."""


@dataclass
class Assessment:
    score: float   # in [1, 5], higher is better
    level: str     # excellent / good / fair / poor / bad
    text: str      # the model's answer: content, defects, level


@dataclass
class Comparison:
    preferred: str       # "A" or "B"
    probability: float   # P(preferred), in [0.5, 1] (how it is read: UARE.compare)
    text: str
    method: str = "answer"                           # "answer" or "scores" (UARE.compare)
    scores: Optional[tuple[float, float]] = None     # A's and B's assess scores, method "scores"


@dataclass
class Restoration:
    image: Image.Image
    text: Optional[str]  # the 4-part analysis when analyze=True, else None
    task: str = ""       # the task actually run (auto resolves to one)
    prompt: str = ""     # the instruction the model was given
    mix: float = 1.0     # the share of the model's change the image keeps
    branch: Optional[str] = None   # the pixel branch that restored it (uare.model.branch), if one did


@dataclass
class InferenceConfig:
    """Sampling defaults; a model folder may override any of them in `inference.json`."""
    steps: int = 24                          # Bagel generate_image default; the edit default is 50
    shift: Optional[float] = None           # None: the model's timestep_shift
    guidance: GuidanceConfig = field(default_factory=GuidanceConfig)
    answer: TextConfig = field(default_factory=lambda: TextConfig(max_new_tokens=256))
    analysis: TextConfig = field(default_factory=lambda: TextConfig(max_new_tokens=512))
    tile_overlap: Optional[int] = None      # None: an eighth of the tile
    # restoration canvas side in pixels (a multiple of the latent grid); None: the model's
    # largest (max_latent_size latent tokens). A model trained on small crops restores
    # best on canvases near its training size.
    tile: Optional[int] = None
    # assess/compare: look at a centre crop of at most this side at the native resolution
    # instead of resizing the image to the IQA sides below (a model trained on native-scale
    # crops; resizing would shrink the noise and blur it has to judge). None: resize.
    iqa_crop: Optional[int] = None
    # assess with iqa_crop: average the level reading over up to this many crops, the
    # centre one (whose answer is kept) and the rest on a grid over the image: one crop's
    # reading by a small model depends on what that crop happens to show
    iqa_views: int = 1
    # assess with iqa_crop: start every view this many pixels past a multiple of 8 (JPEG's
    # block, its grid anchored at the corner of a decoded file), where the image leaves
    # room. None: where the grid of views falls. At view_scale 2 a ViT patch covers 8
    # pixels: a view on the grid puts each block edge between two patches, one at 4 puts
    # a block corner in the middle of every patch, where its patch embedding can see it
    iqa_view_phase: Optional[int] = None
    # assess: the answer opens with "Overall the quality is" as written rather than
    # generated, for a model trained with data.score_first (its scoring answers always open
    # so): the reading no longer waits on the greedy text reaching the prefix, and an
    # answer cannot drift into another task's layout (a comparison) before its verdict
    score_first: bool = False
    # compare: "answer" (the model's written comparison), "scores" (each image assessed
    # alone) or "auto" (scores without a reference, the answer with one); UARE.compare
    compare: str = "answer"
    sample_posterior: bool = True           # Bagel encodes the condition with a sample
    # output = input + decode(restored latent) - decode(input latent) instead of
    # decode(restored latent): for a small autoencoder whose reconstruction error would
    # otherwise cap every output. True: every task; a list: only those tasks (the input's
    # detail the autoencoder cannot hold is worth keeping for sr/deblur/dejpeg, not for
    # denoise, where that detail is the noise). Off by default: Bagel decodes directly.
    residual_decode: Union[bool, list] = False
    # where the model folder has a refiner (uare.model.refiner, refiner.safetensors): the
    # tasks it runs for. True: every task; a list: those tasks; False: none.
    refine: Union[bool, list] = True
    # the refiner's output averaged over this many flips and rotations of its image inputs
    # (moved together; uare.model.branch.self_ensemble: 1, 2, 4 or 8), a number or {task:
    # number} as for temperature below; n times the refiner's time (not the sampler's)
    refine_ensemble: Union[int, dict] = 1
    # where the model folder has pixel branches (uare.model.branch, branches.safetensors): the
    # tasks for which a restoration removing one type that has a branch is that branch's
    # output. True: every task; a list: those tasks; False: none.
    branch: Union[bool, list] = True
    # a pixel branch's output averaged over this many flips and rotations of each tile
    # (uare.model.branch.self_ensemble: 1, 2, 4 or 8), n times the branch's cost: a number
    # for every branch, or {degradation type: number} with "default" for the rest
    branch_ensemble: Union[int, dict] = 1
    # colour fix (uare.color_fix): the output gets the input's low band back (a Gaussian of
    # color_fix_sigma pixels) when every degradation being removed keeps the tone: those
    # of the task (derain: rain and raindrops), or for auto and mixed those the model named.
    # True: TONE_KEEPING_TYPES (so sr, denoise, deblur, dejpeg); a list of tasks: their
    # degradations. Off by default: a model that does not drift in colour needs none.
    color_fix: Union[bool, list] = False
    color_fix_sigma: float = 16.0
    # img2img strength: sampling starts at t = strength from the input's latent noised to
    # that time, (1 - t) z_input + t noise, instead of from pure noise (1.0, Bagel). Lower
    # keeps more of the input's structure and colour; a number, or {task: number} as for
    # temperature below.
    strength: Union[float, dict] = 1.0
    # sampling temperature: the starting noise is scaled by it (Grad-TTS's and Matcha-TTS's
    # temperature). 1.0 samples as trained (Bagel); lower keeps less of the detail that
    # one noise draw invents, which a model too small to place fine detail right loses on
    # (PSNR) more than it gains; 0 starts from the noise's mean (without sample_posterior
    # one output whatever the seed).
    # A number, or {task: number} with "default" for the tasks not listed and "analyze" for
    # analyse-then-restore runs of any task.
    temperature: Union[float, dict] = 1.0
    # share of the model's change the output keeps: input + mix * (restored - input), after
    # the colour fix (for sr the input is its bicubic up-sampling). 1.0 is the model's
    # output; lower trades invented or overdone change for closeness to the input, the
    # fidelity weight of CodeFormer-style restorers: a change that is only partly right
    # (half of a denoiser's smoothing is detail) is worth less than its full size.
    # A number, "auto" (denoise: the share the input's noise level calls for, uare.fidelity;
    # other tasks: 1), or {task: number or "auto"} as for temperature.
    mix: Union[float, str, dict] = 1.0
    # tiles restored in one forward (all tiles of an image share one size and one
    # instruction): fewer, larger matrix products. 2 CPU cores, tiny model, 512 px (25
    # tiles): see bench/inference.py; on a GPU raise it while memory allows
    tile_batch: int = 8
    # CPU threads while decoding text: one-token steps are so small that thread hand-offs
    # cost more than they save (20x slower with 2 threads on a busy 2-core machine)
    decode_threads: Optional[int] = 1
    # IQA image sides (paper Table A.1: short side >= 378, long side <= 980), as trained
    iqa_min_short: int = 378
    iqa_max_long: int = 980

    def __post_init__(self):
        if self.iqa_views < 1:
            raise ValueError(f"iqa_views must be at least 1, got {self.iqa_views}")
        if self.iqa_view_phase is not None and not (isinstance(self.iqa_view_phase, int)
                                                    and 0 <= self.iqa_view_phase < JPEG_BLOCK):
            raise ValueError(f"iqa_view_phase must be a whole number of pixels from 0 to {JPEG_BLOCK - 1}, "
                             f"got {self.iqa_view_phase!r}")
        check_compare_method(self.compare, "inference compare")

    @classmethod
    def from_dict(cls, d: dict) -> "InferenceConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown inference settings: {', '.join(unknown)}")
        d = dict(d)
        if "guidance" in d:
            g = dict(d["guidance"])
            if "interval" in g:
                g["interval"] = tuple(g["interval"])
            d["guidance"] = GuidanceConfig(**g)
        for key in ("answer", "analysis"):
            if key in d:
                d[key] = TextConfig(**d[key])
        return cls(**d)


def fit_size(w: int, h: int, max_side: int, min_side: int, stride: int) -> tuple[int, int]:
    """(w, h) scaled to fit max_side and, where possible, reach min_side on the short
    side; both rounded to multiples of stride (at least one stride)."""
    s = min(1.0, max_side / max(w, h))
    if min(w, h) * s < min_side:
        s = min(min_side / min(w, h), max_side / max(w, h))
    fit = lambda n: max(stride, min(max_side // stride * stride, int(round(n * s / stride)) * stride))
    return fit(w), fit(h)


def resize(x: torch.Tensor, w: int, h: int) -> torch.Tensor:
    """(3, H, W) or (N, 3, H, W) in [0, 1] -> (..., 3, h, w), antialiased bicubic."""
    if x.shape[-1] == w and x.shape[-2] == h:
        return x
    batch = x if x.dim() == 4 else x[None]
    out = F.interpolate(batch, size=(h, w), mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
    return out if x.dim() == 4 else out[0]


def instruction_for(task: str, types: Optional[list[str]] = None) -> str:
    """The simple training prompt for a task (or for the degradation types found)."""
    if types is None:
        types = [TYPE_OF_TASK[task]] if task in TYPE_OF_TASK else []
    phrases = [DEGRADATION_PHRASE[t] for t in types if t in DEGRADATION_PHRASE and t != "downsample"]
    if task == "sr" or not phrases:
        return HIGH_ORDER_INSTRUCTION
    joined = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
    return f"enhance this image with {joined}."


def task_for_types(types: list[str]) -> str:
    tasks = {TASK_OF_TYPE[t] for t in types if t in TASK_OF_TYPE}
    return tasks.pop() if len(tasks) == 1 else "mixed"


def _name(image: ImageLike) -> str:
    return str(image) if isinstance(image, (str, os.PathLike)) else "<image>"


class UARE:
    """One model for quality assessment, comparison and restoration.

    Build with `UARE.from_pretrained(folder)` or `UARE(model)` around a `UAREModel`
    that has a tokenizer. All methods take a path, a PIL image or an HxWx3 uint8 array.
    """

    def __init__(self, model, config: Optional[InferenceConfig] = None, refiner=None, branches=None):
        if getattr(model, "tokenizer", None) is None:
            raise ModelLoadError("the model has no tokenizer (tokenizer.json in its folder)")
        self.model = model.eval()
        self.refiner = refiner
        self.branches = dict(branches or {})   # degradation type -> uare.model.branch.Branch
        self.folder: Optional[Path] = None   # where from_pretrained loaded it (the eval's cache key)
        self.config = config or InferenceConfig()
        self.tok = model.tokenizer
        self.cfg = model.cfg
        p = next(model.parameters())
        self.device, self.dtype = p.device, p.dtype
        self.grid = self.cfg.pixels_per_latent_token
        self.max_side = self.grid * self.cfg.max_latent_size
        tile = self.config.tile or self.max_side
        if tile % self.grid or not self.grid <= tile <= self.max_side:
            raise ValueError(f"inference tile {tile} must be a multiple of {self.grid} "
                             f"between {self.grid} and {self.max_side}")
        if self.config.tile_batch < 1:
            raise ValueError(f"inference tile_batch must be at least 1, got {self.config.tile_batch}")
        if not self.config.color_fix_sigma > 0:
            raise ValueError(f"inference color_fix_sigma must be positive, got {self.config.color_fix_sigma}")
        for where, v in _by_task(self.config.strength, "strength").items():
            check_strength(v, f"inference strength{where}")
        for where, v in _by_task(self.config.temperature, "temperature").items():
            check_temperature(v, f"inference temperature{where}")
        for where, v in _by_task(self.config.mix, "mix").items():
            check_mix(v, f"inference mix{where}")
        for where, v in _by_task(self.config.refine_ensemble, "refine_ensemble").items():
            check_ensemble(v, f"inference refine_ensemble{where}")
        for where, v in _by_key(self.config.branch_ensemble, "branch_ensemble", BRANCH_TYPES,
                                "degradation types").items():
            check_ensemble(v, f"inference branch_ensemble{where}")
        for name in ("color_fix", "residual_decode", "refine", "branch"):
            value = getattr(self.config, name)
            if isinstance(value, (list, tuple)) and set(value) - set(TASKS):
                raise ValueError(f"inference {name}: unknown tasks {sorted(set(value) - set(TASKS))}; "
                                 f"choose from {', '.join(TASKS)}")
        self.vit_max = self.cfg.vit.max_side
        overlap = self.config.tile_overlap
        overlap = round_up(tile // 8, self.grid) if overlap is None else overlap
        self.tiles = TileConfig(tile=tile, overlap=overlap, grid=self.grid)
        self.level_seqs = self._word_seqs([" " + w for w in LEVELS])
        self.ab_seqs = self._word_seqs([" A", " B"])

    @classmethod
    def from_pretrained(cls, path=None, device=None, dtype=None) -> "UARE":
        """Load a model folder (ours or Bagel-layout); None means the bundled model."""
        from .model import UAREModel

        folder = _resolve_folder(path)
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if dtype is None and str(device).startswith("cuda"):
            dtype = torch.bfloat16
        try:
            model = UAREModel.from_pretrained(folder, device=device, dtype=dtype)
            config = _load_inference_config(folder)
            refiner = load_refiner(folder, device=device, dtype=dtype)
            branches = load_branches(folder, device=device, dtype=dtype)
        except (ValueError, OSError) as e:
            raise ModelLoadError(f"{folder}: cannot load the model ({e})") from e
        pipe = cls(model, config, refiner, branches)
        pipe.folder = folder
        return pipe

    # ---- assess and compare ---------------------------------------------------------

    @torch.inference_mode()
    def assess(self, image: ImageLike) -> Assessment:
        """Score in [1, 5] (continuous, deterministic), its level and the model's answer."""
        return self._assess(load_image(image))[0]

    def _assess(self, img: Image.Image) -> tuple[Assessment, torch.Tensor]:
        """assess, and the pooled level reading its score comes from."""
        views = self._iqa_views(img)
        question = self.tok.encode(ASSESS_QUESTION)
        others = self._read_views(views[1:], question, SCORE_PREFIX, self.level_seqs) if len(views) > 1 else []

        def pooled(logp: torch.Tensor) -> torch.Tensor:
            return _mean_reading([logp, *others]) if others else logp

        ctx = self._asked([views[0]], question)
        text, logp = self._answer_and_read(ctx, SCORE_PREFIX, self.level_seqs,
                                           lambda lp: _verdict_of_levels(pooled(lp)),
                                           opens=self.config.score_first)
        reading = pooled(logp)
        score = level_score(reading, range(len(LEVELS)))
        return Assessment(score=score, level=quality_level(score), text=text), reading

    @torch.inference_mode()
    def compare(self, a: ImageLike, b: ImageLike, ref: Optional[ImageLike] = None,
                method: Optional[str] = None) -> Comparison:
        """Which of A and B is better (against `ref` when given), P(winner) and the analysis.

        method "answer": the model's written comparison, its verdict read at "Overall,
        image" with the images given in both orders and the two readings averaged, so the
        order cannot decide: a model that cannot tell its two images apart says 0.5, not a
        confident "A". The answer kept is the one in the given order, its verdict the
        averaged one. "scores": each image assessed alone (`assess`), the higher score
        preferred, P(A better) by Thurstone's rule from the two level readings; a
        reference is not used. "auto": scores without a reference, the answer with one.
        None: the model's setting (inference.json `compare`).
        """
        method = check_compare_method(self.config.compare if method is None else method)
        if method == "auto":
            method = "scores" if ref is None else "answer"
        a_img, b_img = load_image(a), load_image(b)
        if method == "scores":
            return self._compare_by_scores(a_img, b_img, with_ref=ref is not None)
        head = [load_image(ref)] if ref is not None else []
        question = self.tok.encode(COMPARE_QUESTION_REF if ref is not None else COMPARE_QUESTION)

        swapped = _swap_ab(self._answer_and_read(self._asked(head + [b_img, a_img], question), COMPARE_PREFIX,
                                                 self.ab_seqs, _verdict_of_ab, finish=False)[1])

        def debiased(logp: torch.Tensor) -> torch.Tensor:
            return _mean_reading([logp, swapped])

        text, logp = self._answer_and_read(self._asked(head + [a_img, b_img], question), COMPARE_PREFIX, self.ab_seqs,
                                           lambda lp: _verdict_of_ab(debiased(lp)))
        preferred, probability = _winner(debiased(logp))
        return Comparison(preferred=preferred, probability=probability, text=text, method="answer")

    def _compare_by_scores(self, a: Image.Image, b: Image.Image, with_ref: bool = False) -> Comparison:
        (ra, la), (rb, lb) = self._assess(a), self._assess(b)
        p_a = _p_first_better(la, lb)
        preferred, probability = ("A", p_a) if ra.score >= rb.score else ("B", 1.0 - p_a)
        text = (f"Image A: {ra.text} Image B: {rb.text} Overall, image {preferred} is better in "
                f"perceptual quality (score {ra.score:.2f} against {rb.score:.2f}).")
        if with_ref:
            text += " The reference was not used: this verdict compares the two quality scores."
        return Comparison(preferred=preferred, probability=max(probability, 0.5), text=text,
                          method="scores", scores=(ra.score, rb.score))

    # ---- restore --------------------------------------------------------------------

    @torch.inference_mode()
    def restore(self, image: ImageLike, task: str = "auto", prompt: Optional[str] = None,
                analyze: bool = False, steps: Optional[int] = None, seed: int = 0,
                progress: Optional[Callable[[int, int], None]] = None,
                color_fix: Optional[bool] = None, types: Optional[Sequence[str]] = None,
                strength: Optional[float] = None, temperature: Optional[float] = None,
                mix: Union[float, str, None] = None, refine: Optional[bool] = None,
                branch: Optional[bool] = None, ensemble: Optional[int] = None) -> Restoration:
        """Restore (or enhance) an image; the output has the input's size (4x for sr).

        task: one of TASKS; prompt: your own instruction instead of the task's; analyze:
        generate the 4-part analysis first and condition on it (returned as `text`).
        Images over the model's maximum side are restored in blended tiles.
        progress(done, total) is told after every sampler step over all tiles (by a pixel
        branch: after each pass of its self-ensemble over the image's tiles).
        color_fix: give the output the input's low band (tone, colour) back; None: the
        model's setting (inference.json `color_fix`, by task).
        types: the degradations the image is known to have (e.g. ["raindrop"] or
        ["lowlight", "noise"]); the instruction then names them, as the paper's single and
        multiple degradation instruction does ("enhance this image with raindrops."), and
        the colour fix follows them. Ignored with prompt or analyze, and for sr.
        strength: where sampling starts, 1.0 from pure noise, lower from the input's
        latent partly noised (img2img); None: the model's setting (inference.json).
        temperature: scale of the starting noise, 1.0 as trained, 0 its mean (the most
        invented detail at 1, the closest to the original on average near 0); None: the
        model's setting.
        mix: share of the model's change the output keeps, in [0, 1]: 1 the model's output,
        0.5 halfway between it and the input (for sr its bicubic up-sampling), 0 the input;
        "auto": for denoise, the share the input's estimated noise level calls for
        (uare.fidelity; 1 for other tasks); None: the model's setting (inference.json `mix`,
        by task). The share used is returned as `mix`.
        refine: run the model folder's refiner (refiner.safetensors) on the decoded output;
        None: the model's setting (inference.json `refine`, by task; on where it has one).
        branch: where the restoration removes one degradation type alone (the task's, the
        one named, or with analyze the one the analysis names) and the model folder has a
        pixel branch for it (branches.safetensors; the tiny model's: JPEG, raindrops,
        noise), return that branch's output instead of sampling; None: the model's setting
        (inference.json `branch`, by task; on where it has one). The branch used is
        returned as `branch`.
        ensemble: the output of a branch, or of the refiner, averaged over this many flips
        and rotations of the image (1, 2, 4 or 8; n times that network's time); None: the
        model's settings (inference.json `branch_ensemble` by the branch's type,
        `refine_ensemble` by task).
        """
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
        bad = [t for t in types or () if t not in TASK_OF_TYPE]
        if bad:
            raise ValueError(f"unknown degradation types {bad}; choose from {', '.join(TASK_OF_TYPE)}")
        steps = self.config.steps if steps is None else int(steps)
        if steps < 2:
            raise ValueError(f"steps must be at least 2, got {steps}")
        img = self._input_for(image, task)
        x = torch.from_numpy(_to_float(img)).permute(2, 0, 1)
        job, task, types = self._job(img, task, prompt, analyze, types, steps, seed, strength, temperature, refine,
                                     branch, ensemble)
        mix = check_mix(self._task_setting("mix", task, analyze) if mix is None else mix)
        if analyze and max(x.shape[-2:]) > self.tiles.tile:
            job.text = self._analysis_of_whole(x, job)  # one analysis shared by every tile
        branch = self._branch_for(job)
        if progress is not None:
            # a branch's unit is one pass of its self-ensemble over a tile, the sampler's one step
            total = (num_tiles(*x.shape[-2:], BRANCH_TILES) * self._branch_ensemble(branch, job) if branch is not None
                     else num_tiles(*x.shape[-2:], self.tiles) * (steps - 1))
            job.on_step = lambda n: progress(_tick(job, n), total)
        if branch is not None:
            out = self._run_branch(branch, x, job)
        else:
            out = restore_any_size(x, lambda tiles: self._restore_tiles(tiles, job), self.tiles,
                                   batch=self.config.tile_batch)
        if analyze:
            types = mentioned_types(job.text or "")
        if self._color_fix(task, types) if color_fix is None else color_fix:
            out = apply_color_fix(out, x, self.config.color_fix_sigma)
        if mix == "auto":   # the noise-adaptive share is for the sampler's noise alone (uare.fidelity);
            # a branch was trained for the PSNR of its whole output
            mix = auto_mix(out, x) if task == "denoise" and job.branch_used is None else 1.0
        if mix != 1.0:
            out = torch.lerp(x, out, mix)
        image_out = Image.fromarray((out.permute(1, 2, 0).numpy() * 255.0 + 0.5).astype("uint8"))
        return Restoration(image=image_out, text=job.text, task=task, prompt=job.instruction, mix=mix,
                           branch=job.branch_used)

    def _job(self, img: Image.Image, task: str, prompt: Optional[str], analyze: bool, types, steps: int,
             seed: int, strength: Optional[float] = None, temperature: Optional[float] = None,
             refine: Optional[bool] = None, branch: Optional[bool] = None,
             ensemble: Optional[int] = None) -> tuple["_Job", str, list[str]]:
        """The settings of one restore call as restore resolves them (instruction, sampling,
        decoding, refiner): (job, resolved task, degradation types named). Also what
        scripts/train_refiner.py restores its training pairs with."""
        instruction, task, types = self._instruction(img, task, prompt, analyze, types)
        strength = check_strength(self._task_setting("strength", task, analyze) if strength is None else strength)
        temperature = check_temperature(self._task_setting("temperature", task, analyze) if temperature is None
                                        else temperature)
        job = _Job(instruction, analyze, steps, seed, self.device, self._residual(task), strength, temperature,
                   refine=self._refines(task, refine), removed=None if analyze else removed_types(task, types),
                   branch=self._branches_on(task, branch),
                   ensemble=None if ensemble is None else check_ensemble(ensemble),
                   refine_ensemble=check_ensemble(self._task_setting("refine_ensemble", task, analyze)
                                                  if ensemble is None else ensemble))
        return job, task, types

    def _residual(self, task: str) -> bool:
        return _for_task(self.config.residual_decode, task)

    def _refines(self, task: str, refine: Optional[bool] = None) -> bool:
        if self.refiner is None:
            if refine:
                raise ValueError(f"refine: {self.folder or 'this model'} has no refiner "
                                 f"({REFINER_FILE} in its folder)")
            return False
        return _for_task(self.config.refine, task) if refine is None else bool(refine)

    def _branches_on(self, task: str, branch: Optional[bool] = None) -> bool:
        if not self.branches:
            if branch:
                raise ValueError(f"branch: {self.folder or 'this model'} has no pixel branches "
                                 f"({BRANCH_FILE} in its folder)")
            return False
        return _for_task(self.config.branch, task) if branch is None else bool(branch)

    def _branch_for(self, job: "_Job"):
        """The pixel branch that restores this job (None: the model samples): one type
        removed, a branch for it, and branches on. With analyze, known once the analysis is."""
        if not job.branch or (job.analyze and job.text is None):
            return None
        removed = job.removes()
        return self.branches.get(removed[0]) if len(removed) == 1 else None

    def _run_branch(self, branch, x: torch.Tensor, job: "_Job", ticks: bool = True) -> torch.Tensor:
        """(3, H, W) or a batch of canvases (N, 3, H, W) in [0, 1] -> the branch's output;
        ticks: each pass over each tile is a unit of restore's progress."""
        job.branch_used = branch.cfg.type
        n = self._branch_ensemble(branch, job)

        def run(tiles: torch.Tensor) -> torch.Tensor:
            tick = (lambda: job.on_step(len(tiles))) if ticks and job.on_step else None
            return self_ensemble(branch, tiles.to(self.device, self.dtype), n, tick).float().clamp(0, 1).cpu()

        if x.dim() == 4:
            return run(x)
        if max(x.shape[-2:]) <= BRANCH_TILES.tile:   # whole, unpadded: no made-up border to read
            return run(x[None])[0]
        return restore_any_size(x, run, BRANCH_TILES)

    def _branch_ensemble(self, branch, job: "_Job") -> int:
        return _keyed(self.config.branch_ensemble, branch.cfg.type) if job.ensemble is None else job.ensemble

    def _task_setting(self, name: str, task: str, analyze: bool = False):
        """A number-or-{task: number} setting (strength, temperature, mix) for this run: the
        "analyze" entry for analyse-then-restore runs, else the task's, else "default"."""
        s = getattr(self.config, name)
        return _keyed(s, "analyze" if analyze and isinstance(s, dict) and "analyze" in s else task)

    def _color_fix(self, task: str, types) -> bool:
        """Whether the output takes the input's low band: every degradation removed is one
        the setting allows. Removed: for auto and mixed, those the model named (none
        named, no fix); for a task, its own, narrowed to those named if any were (derain
        of raindrops alone)."""
        c = self.config.color_fix
        if isinstance(c, (list, tuple)):
            allowed = _types_of(c)
        else:
            allowed = set(TONE_KEEPING_TYPES) if c else set()
        if task in ("auto", "mixed"):
            removed = set(types)
        else:
            removed = (_types_of([task]) & set(types)) or _types_of([task])
        return bool(removed) and removed <= allowed

    def _input_for(self, image: ImageLike, task: str) -> Image.Image:
        img = load_image(image)
        if task != "sr":
            return img
        w, h = img.width * 4, img.height * 4
        if w * h > MAX_PIXELS:
            raise ImageError(f"{_name(image)}: the x4 output {w}x{h} is over the limit of "
                             f"{MAX_PIXELS:,} pixels (set UARE_MAX_PIXELS to raise it)")
        return img.resize((w, h), Image.BICUBIC)

    def _instruction(self, img: Image.Image, task: str, prompt: Optional[str],
                     analyze: bool, known: Optional[Sequence[str]] = None) -> tuple[str, str, list[str]]:
        """(instruction, resolved task, degradation types named: by the caller, or by
        the model for auto). auto asks the model's own assessment; it keeps the size, so a
        "low resolution" finding does not turn it into x4 sr."""
        if prompt:
            return prompt, task, []
        if analyze:
            return ANALYZE_INSTRUCTION, task, []
        known = [t for t in dict.fromkeys(known or ()) if t != "downsample"]
        if known and task != "sr":
            resolved = task_for_types(known) if task == "auto" else task
            return instruction_for(resolved, known), resolved, known
        if task != "auto":
            return instruction_for(task), task, []
        found = mentioned_types(self.assess(img).text)
        types = [t for t in found if t in TASK_OF_TYPE and t != "downsample"]
        if not types:
            return HIGH_ORDER_INSTRUCTION, "mixed", []
        return instruction_for("auto", types), task_for_types(types), types

    def _condition(self, tiles: torch.Tensor, job: "_Job", guided: bool = True):
        """Contexts for N canvases of one size, (N, 3, h, w) in [0, 1]: full (VAE, ViT,
        instruction) and the unconditional ones guidance will use: no text (right after
        the images), no image (the instruction alone, one context shared by all N); and
        the canvases' (N, z, h', w') latents. guided=False: the full context alone (text
        generation uses no guidance)."""
        m = self.model
        ctx = m.new_context()
        pixels = (tiles * 2 - 1).to(self.device, self.dtype)
        latent = m.autoencoder.encode(pixels, sample=self.config.sample_posterior, generator=job.gen)
        m.prefill_vae_image(ctx, latent)
        self._prefill_vit(ctx, tiles, iqa=False)
        contexts = {"full": ctx}
        uses = self.config.guidance.contexts() if guided else ()
        if "text" in uses:
            contexts["text"] = ctx.fork()
        ids = self.tok.encode(job.instruction)
        m.prefill_text(ctx, ids)
        if "image" in uses:
            contexts["image"] = m.new_context()
            m.prefill_text(contexts["image"], ids)
        return contexts, latent

    def _restore_tiles(self, tiles: torch.Tensor, job: "_Job") -> torch.Tensor:
        """(N, 3, h, w) in [0, 1], h and w multiples of the grid -> restored (N, 3, h, w)."""
        restored, cond = self._restored_latents(tiles, job)
        branch = self._branch_for(job)
        if branch is not None:   # analyse-then-restore of one canvas: the analysis decides now
            return self._run_branch(branch, tiles, job, ticks=False)   # the bar counted the sampler's steps
        removed = job.removes()
        refine = job.refine and self.refiner.cfg.applies(removed, job.analyze)   # uare.model.refiner
        pixels = decoded = self._decode(restored)
        if job.residual or refine:
            image, decoded_input = tiles.to(pixels) * 2 - 1, self._decode(cond)
        if job.residual:
            # add only what the model changed to the input: the autoencoder's own
            # reconstruction error of the input cancels instead of capping the output
            pixels = image + decoded - decoded_input
        if refine:
            types = self.refiner.cfg.encode_types([removed] * len(pixels)).to(self.device, self.dtype)

            def refined(z: torch.Tensor) -> torch.Tensor:   # the four images moved together
                return self.refiner(*z.split(3, 1), types)

            seen = torch.cat([pixels, image, decoded, decoded_input], 1).to(self.dtype)
            pixels = self_ensemble(refined, seen, job.refine_ensemble).float()
        return (pixels * 0.5 + 0.5).clamp(0, 1).cpu()

    def _restored_latents(self, tiles: torch.Tensor, job: "_Job") -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 3, h, w) in [0, 1] -> (restored latents, the input's latents), (N, z, h', w') each."""
        contexts, cond = self._condition(tiles, job)
        if job.analyze and job.text is None:  # single canvas: the analysis stays in the cache
            job.text = self._generate(contexts["full"], self.config.analysis)
        elif job.analyze:
            self.model.prefill_text(contexts["full"], self.tok.encode(job.text))
        n, gh, gw = tiles.shape[0], tiles.shape[-2] // self.grid, tiles.shape[-1] // self.grid
        # one draw per tile, in tile order: without posterior sampling (which draws for the
        # whole batch at encoding) the same noise as one tile at a time
        noise = torch.stack([torch.randn((gh * gw, self.cfg.latent_token_dim), generator=job.gen,
                                         device=self.device, dtype=torch.float32) for _ in range(n)])
        if job.temperature != 1.0:
            noise = noise * job.temperature
        p = self.cfg.latent_patch_size
        anchor = latents_to_tokens(cond, p)
        if job.strength < 1.0:
            noise = (1.0 - job.strength) * anchor.float() + job.strength * noise

        def velocity(name, x, t):
            return self.model.velocity(contexts[name], x.to(self.dtype), t, grid=(gh, gw), anchor=anchor).float()

        shift = self.cfg.timestep_shift if self.config.shift is None else self.config.shift
        x = euler_sample(guided_velocity(velocity, self.config.guidance), noise,
                         flow_timesteps(job.steps, shift, job.strength),
                         callback=(lambda i, total: job.on_step(n)) if job.on_step else None)
        return tokens_to_latents(x.to(self.dtype), gh, gw, p), cond

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        # a few canvases a call: on 2 CPU cores a 50-tile decode ran at 129 ms a tile, 1 to
        # 5 tiles at 58-62 ms (the activations of many canvases no longer fit the cache)
        ae = self.model.autoencoder
        return torch.cat([ae.decode(z) for z in latents.split(DECODE_CHUNK)]).float()

    def _analysis_of_whole(self, x: torch.Tensor, job: "_Job") -> str:
        if self.config.iqa_crop:   # a native-scale model judges a native-scale view, as assess does
            x = _centre_crop(x, self.tiles.tile)
        w, h = fit_size(x.shape[-1], x.shape[-2], self.tiles.tile, 0, self.grid)
        contexts, _ = self._condition(resize(x, w, h)[None], job, guided=False)
        return self._generate(contexts["full"], self.config.analysis)

    # ---- shared pieces --------------------------------------------------------------

    def _prefill_vit(self, ctx, image, iqa: bool = True) -> None:
        """ViT block of an image (PIL, (3, H, W) in [0, 1], or (N, 3, H, W) restoration
        canvases), sized as in training: IQA images to the configured (min short, max
        long) side; a restoration canvas as is (only capped to the ViT's maximum). Sides
        are rounded to the ViT's stride (a patch in image pixels)."""
        x = image if isinstance(image, torch.Tensor) else torch.from_numpy(_to_float(image)).permute(2, 0, 1)
        p, c = self.cfg.vit.stride, self.config
        lo, hi = (c.iqa_min_short, min(c.iqa_max_long, self.vit_max)) if iqa else (0, self.vit_max)
        if iqa and c.iqa_crop:
            lo, hi = 0, min(c.iqa_crop, self.vit_max)
            x = _centre_crop(x, hi)
        w, h = fit_size(x.shape[-1], x.shape[-2], hi, lo, p)
        pixels = resize(x.float(), w, h) * 2 - 1
        self.model.prefill_vit_image(ctx, pixels.to(self.device, self.dtype))

    def _generate(self, ctx, cfg: TextConfig) -> str:
        """Answer from <|im_start|> to <|im_end|>, written into ctx; returns the text."""
        return self.tok.decode(self._continue(ctx, None, cfg)[0]).strip()

    def _continue(self, ctx, logits: Optional[torch.Tensor], cfg: TextConfig,
                  until: Optional[str] = None) -> tuple[list[int], Optional[torch.Tensor]]:
        """Generate answer tokens into ctx: a new answer (logits None) or one already open
        whose next-token logits are `logits`. With `until`, stop as soon as the answer ends
        with that text, leaving ctx open there. Returns (tokens, logits after them when
        `until` was reached, else None)."""
        last = {}

        def step(t: int) -> torch.Tensor:
            last["logits"] = self._in_vocab(self.model.decode_step(ctx, t))
            return last["logits"]

        def reached(tokens: list[int]) -> bool:
            return self.tok.decode(tokens[-32:]).endswith(until)

        with self._decode_threads():
            if logits is None:
                logits = self._in_vocab(self.model.decode_step(ctx, self.tok.bos_id))
            tokens = generate_tokens(step, logits, self.tok.eos_id, cfg, stop=reached if until else None)
        return tokens, (last["logits"] if until and tokens and reached(tokens) else None)

    @contextmanager
    def _decode_threads(self):
        n, before = self.config.decode_threads, torch.get_num_threads()
        if self.device.type != "cpu" or not n or n == before:
            yield
            return
        torch.set_num_threads(n)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    def _in_vocab(self, logits: torch.Tensor) -> torch.Tensor:
        """Rule out ids past the tokenizer's vocabulary (padding rows of the embedding)."""
        n = self.tok.vocab_size
        if logits.shape[-1] > n:
            logits = logits.clone()
            logits[n:] = float("-inf")
        return logits

    def _answer_and_read(self, ctx, prefix: str, words: list[list[int]],
                         verdict: Callable[[torch.Tensor], str],
                         opens: bool = False, finish: bool = True) -> tuple[str, torch.Tensor]:
        """Generate the answer; return it with log P(word | answer up to prefix, prefix)
        for each word's token sequence, shape (len(words),).

        The answer is generated up to the prefix, read there, and verdict(reading) (the
        text after the prefix that the reading gives, e.g. " good, score 3.62.") is
        written in place of the greedy word before the model goes on: so the answer says
        what the returned score says, and what follows is conditioned on it. With `opens`
        the answer starts with the prefix, written, not generated. When the answer never
        reaches the prefix, the reading is taken in a fork fed with the answer's head and
        the prefix, and the answer is left as it is. finish=False: stop at the reading
        (only the reading is wanted; the text returned is the answer's head)."""
        cfg = self.config.answer
        with self._decode_threads():
            gen = ctx.fork()
            if opens:
                head = self.tok.encode(prefix)
                logits = self._in_vocab(self._open_answer(gen, prefix)[0])
            else:
                head, logits = self._continue(gen, None, cfg, until=prefix)
            if logits is None:
                text = self.tok.decode(head).strip()
                head_text = text.split(prefix)[0].strip()
                return text, self._read_at(ctx, f"{head_text} {prefix}" if head_text else prefix, words)
            logp = self._sequence_logprobs(gen, logits, words)
            if not finish:
                return self.tok.decode(head).strip(), logp
            written = self.tok.encode(verdict(logp))
            logits = self._in_vocab(self.model.extend_text(gen, written)[0])
            left = cfg.max_new_tokens - len(head) - len(written)
            rest = self._continue(gen, logits, replace(cfg, max_new_tokens=left))[0] if left > 0 else []
            return self.tok.decode(head + written + rest).strip(), logp

    def _read_at(self, ctx, answer_head: str, words: list[list[int]]) -> torch.Tensor:
        """log P(word | the answer so far is answer_head) for each word, in a fork of ctx
        (ctx: the question just prefilled)."""
        probe = ctx.fork()
        return self._sequence_logprobs(probe, self._open_answer(probe, answer_head)[0], words)

    def _open_answer(self, ctx, head: str) -> torch.Tensor:
        """Open the answer with BOS and `head` in one forward; the next-token logits of
        every context in ctx's batch."""
        return self.model.extend_text(ctx, [self.tok.bos_id, *self.tok.encode(head)])

    def _read_views(self, views: list[torch.Tensor], question: list[int], answer_head: str,
                    words: list[list[int]]) -> list[torch.Tensor]:
        """_read_at for each of several same-size views: one batched context when every
        word is one token (Qwen2's levels, the tiny tokenizer's), else view by view."""
        if any(len(w) != 1 for w in words):
            return [self._read_at(self._asked([v], question), answer_head, words) for v in views]
        ctx = self._asked([torch.stack(views)], question)
        with self._decode_threads():
            logits = self._open_answer(ctx, answer_head)
        ids = torch.tensor([w[0] for w in words], device=logits.device)
        return list(torch.log_softmax(logits.float(), dim=-1)[:, ids].cpu())

    def _asked(self, images: list, question: list[int]):
        """A new context holding the images (ViT), in order, then the question: the prompt
        of assess (one image, or a batch of same-size views) and compare."""
        ctx = self.model.new_context()
        for img in images:
            self._prefill_vit(ctx, img)
        self.model.prefill_text(ctx, question)
        return ctx

    def _iqa_views(self, img: Image.Image) -> list:
        """What assess looks at: the image itself, or with iqa_crop its centre crop and
        up to iqa_views - 1 more crops of that side on an even grid (corners first)."""
        c = self.config
        if not c.iqa_crop or c.iqa_views <= 1:
            return [img]
        x = torch.from_numpy(_to_float(img)).permute(2, 0, 1)
        side = min(c.iqa_crop, self.vit_max)
        h, w = x.shape[-2:]
        centre = (max(0, (h - side) // 2), max(0, (w - side) // 2))
        n = math.ceil(math.sqrt(c.iqa_views - 1))
        spots = [centre] + [(round(i * max(0, h - side) / max(n - 1, 1)), round(j * max(0, w - side) / max(n - 1, 1)))
                            for i in range(n) for j in range(n)]
        if c.iqa_view_phase is not None:
            spots = [(_on_phase(t, h - side, c.iqa_view_phase), _on_phase(left, w - side, c.iqa_view_phase))
                     for t, left in spots]
        spots = list(dict.fromkeys(spots))[:c.iqa_views]   # a small image gives fewer distinct crops
        return [x[:, t:t + side, l:l + side] for t, l in spots]

    def _sequence_logprobs(self, ctx, logits: torch.Tensor, seqs: list[list[int]]) -> torch.Tensor:
        """log P(seq) for each token sequence, walking their shared prefixes once (a trie).

        With one token per word (Qwen2) this is a single read of `logits`, and the level
        score is exactly Q-Align's softmax over the five level-word logits."""
        logp = torch.log_softmax(logits.float(), dim=-1)
        out = torch.empty(len(seqs), dtype=torch.float32)
        groups: dict[int, list[int]] = {}
        for k, s in enumerate(seqs):
            groups.setdefault(s[0], []).append(k)
        for tok, members in groups.items():
            done = [k for k in members if len(seqs[k]) == 1]
            rest = [k for k in members if len(seqs[k]) > 1]
            out[done] = logp[tok].cpu()
            if rest:
                branch = ctx.fork()
                nxt = self.model.decode_step(branch, tok)
                out[rest] = logp[tok].cpu() + self._sequence_logprobs(branch, nxt, [seqs[k][1:] for k in rest])
        return out

    def _word_seqs(self, words: list[str]) -> list[list[int]]:
        seqs = [self.tok.encode(w) for w in words]
        if any(not s for s in seqs) or len({tuple(s) for s in seqs}) != len(seqs):
            raise ModelLoadError(f"the tokenizer cannot encode {words} as distinct token sequences")
        return seqs


@dataclass
class _Job:
    """One restore call's settings and state shared across its tiles."""
    instruction: str
    analyze: bool
    steps: int
    seed: int
    device: torch.device
    residual: bool = False
    strength: float = 1.0
    temperature: float = 1.0
    refine: bool = False
    branch: bool = False              # pixel branches may restore it (UARE._branch_for)
    branch_used: Optional[str] = None
    ensemble: Optional[int] = None    # restore's override of branch_ensemble (resolved by type)
    refine_ensemble: int = 1          # the refiner's, resolved (restore's override or the task's)
    removed: Optional[list] = None    # degradation types being removed; None: read from the analysis
    text: Optional[str] = None
    on_step: Optional[Callable[[int], None]] = None   # told how many tiles made one step
    steps_done: int = 0
    gen: torch.Generator = field(init=False)

    def __post_init__(self):
        self.gen = torch.Generator(device=self.device).manual_seed(self.seed)

    def removes(self) -> list:
        """The types the refiner is told: those given, else those the analysis names."""
        return removed_types(None, mentioned_types(self.text or "")) if self.removed is None else self.removed


def _keyed(setting, key: str):
    """A number-or-{key: number} setting's value for key: its own entry, else "default",
    else 1."""
    return setting.get(key, setting.get("default", 1.0)) if isinstance(setting, dict) else setting


def _by_task(setting, name: str) -> dict:
    """A number-or-{task: number} inference setting as {label for errors: value}; refuses
    keys that are no task (the values are checked by the setting's own check)."""
    return _by_key(setting, name, (*TASKS, "analyze"), "tasks")


def _by_key(setting, name: str, keys, what: str) -> dict:
    """A number-or-{key: number} inference setting as {label for errors: value}, refusing
    keys outside `keys` and "default"."""
    if not isinstance(setting, dict):
        return {"": setting}
    bad = set(setting) - set(keys) - {"default"}
    if bad:
        raise ValueError(f"inference {name}: unknown {what} {sorted(bad)}; choose from default, "
                         f"{', '.join(keys)}")
    return {f"[{k}]": v for k, v in setting.items()}


def removed_types(task: Optional[str], types) -> list[str]:
    """The degradation types a restoration removes, as the refiner is told: those named (by
    the caller, the auto assessment or the analysis), else the task's own (sr: x4
    down-sampling); none for a mix restored with the plain mixed prompt."""
    named = sorted(t for t in types or () if t in TASK_OF_TYPE)
    if task == "sr":
        return ["downsample"]
    if named:
        return named
    return [TYPE_OF_TASK[task]] if task in TYPE_OF_TASK else []


def _for_task(setting: Union[bool, list], task: str) -> bool:
    """A bool-or-list-of-tasks inference setting (residual_decode, refine) for one task."""
    return task in setting if isinstance(setting, (list, tuple)) else bool(setting)


def _types_of(tasks) -> set[str]:
    """The degradation types the given tasks remove (derain: rain and raindrop)."""
    return {t for t, k in TASK_OF_TYPE.items() if k in tasks}


def _tick(job: _Job, n: int = 1) -> int:
    job.steps_done += n
    return job.steps_done


def _centre_crop(x: torch.Tensor, side: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    top, left = max(0, (h - side) // 2), max(0, (w - side) // 2)
    return x[..., top:top + side, left:left + side]


def _to_float(img: Image.Image):
    import numpy as np

    return np.asarray(img, dtype=np.float32) / 255.0


def _resolve_folder(path) -> Path:
    if path is not None:
        folder = Path(path)
        if not folder.is_dir():
            raise ModelLoadError(f"{folder}: no such model folder")
        return folder
    env = os.environ.get("UARE_MODEL")
    candidates = ([Path(env)] if env else []) + list(DEFAULT_FOLDERS)
    for folder in candidates:
        if (folder / "config.json").exists() or (folder / "llm_config.json").exists():
            return folder
    raise ModelLoadError(
        "no default model found (weights/uare-tiny is missing from this checkout); pass a model folder: "
        "UARE.from_pretrained('path/to/folder') or `--model DIR` on the command line "
        "(or set UARE_MODEL)")


def _load_inference_config(folder: Path) -> InferenceConfig:
    import json

    path = folder / "inference.json"
    if not path.exists():
        return InferenceConfig()
    try:
        return InferenceConfig.from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError) as e:
        raise ValueError(f"{path}: bad inference settings ({e})") from e
