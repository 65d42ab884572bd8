"""On-the-fly training samples from manifests and recorded seeds.

`SampleStream` maps a global sample index n to one sample, deterministically: the kind is
drawn by the recipe's sampling ratios, then a manifest line, then the crop; the
degradation comes from (image, preset, seed) of that line, or is drawn afresh from the
sample's own generator for the kinds listed in `online`. So the data position of a run
is a single integer, and any process can build sample n without the others.

A sample is a list of `RawItem`s in sequence order (bagel-facts §4):
- restoration: [clean VAE + ViT of the LQ image] [instruction, loss 0] [noisy VAE target];
- interleaved: the same with [analysis text, loss 1] between instruction and target;
- IQA: [ViT image(s)] [question, loss 0] [answer, loss 1] (no CFG dropout: VLM data).
For SR, the LQ image is resized back to the target size before encoding, so condition
and target latents share a grid (the restoration pipeline must do the same).
"""
from __future__ import annotations

import bisect
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Optional

import numpy as np
from PIL import Image

from ..imageio import load_image, read_jsonl
from . import iqa
from .build import IQA_TASKS, KINDS, draw_degradation
from .instructions import analyze_instruction, simple_instruction
from .responses import analysis

IQA_LOSSES = ("answer", "verdict", "mixed")   # DataConfig.iqa_loss


@dataclass
class RawItem:
    """One item before tokenisation and encoding. `role`: "text", "vit" or "vae"."""
    role: str
    text: str = ""
    image: Optional[Image.Image] = None
    loss: bool = False      # text: supervised answer; vae: noisy target
    loss_prefix: str = ""   # text: only this opening of the text carries the loss
    cfg: bool = False       # may be dropped by CFG dropout


@dataclass
class RawSample:
    kind: str
    index: int
    items: list[RawItem]
    record: Optional[dict] = None


@dataclass
class DataConfig:
    """Where samples come from and how big they are (Table A.1 gives the paper values)."""
    manifests: dict[str, str] = field(default_factory=dict)   # kind -> manifest path
    ratios: dict[str, float] = field(default_factory=dict)    # kind -> sampling ratio
    seed: int = 0
    crop: int = 0                # random square crop of the clean image first (0 = none)
    # with crop: each crop is cut from a region up to 1/rescale times larger and shrunk to
    # `crop` (a factor log-uniform in [rescale, 1]), so a small photo collection is also
    # seen as dense, downscaled content (web photos, ImageNet) whose texture a model
    # trained only at native scale reads as degradation. 1.0: native scale only
    rescale: float = 1.0
    res_min_short: int = 512     # restoration images: short side at least this...
    res_max_long: int = 1024     # ...long side at most this
    iqa_min_short: int = 378
    iqa_max_long: int = 980
    cfg_text_drop: float = 0.1
    cfg_vit_drop: float = 0.1
    cfg_vae_drop: float = 0.1
    samples_per_step: int = 8    # global batch in samples
    max_tokens_per_pack: int = 11520
    # build step s+1's packs in a thread while step s computes: on for GPUs (paper
    # recipes); off by default, as on 2 CPU cores the thread only competes for the cores
    prefetch: bool = False
    # processes that build samples (decode, crop, degrade) a few steps ahead, like a
    # DataLoader's workers: for GPU runs, where one process cannot feed the device; 0 builds
    # them in the training process (the right choice on 2 CPU cores)
    workers: int = 0
    # kinds whose degradation (preset, seed; for iqa also the task) is drawn afresh for
    # every sample instead of read from the manifest line. A manifest gives each photo a
    # few fixed degradations, so with few photos a model can tell the quality from the
    # content; redrawn, every photo is seen with every type and severity (as a KADID
    # reference is with every distortion and level). Still a function of n.
    online: tuple[str, ...] = ()
    # scoring answers open with "Overall the quality is <level>, score <s>." and describe
    # after it (iqa.scoring_sample); uare assess reads the level wherever it appears
    score_first: bool = False
    # which IQA tasks (score, describe, compare) the iqa kind gives: lines of other tasks
    # are skipped, and online draws pick among these
    iqa_tasks: tuple[str, ...] = IQA_TASKS
    # "answer": the whole IQA answer carries the text loss; "verdict": a scoring answer's
    # opening verdict only (needs score_first), as Q-Align trains on the level alone, so
    # the level word is not one token among a templated description's thirty; "mixed":
    # half the scoring answers each way (by the sample's seed), so the level word weighs
    # more while every part of the answer, its end included, is still supervised
    iqa_loss: str = "answer"

    def check(self) -> None:
        if not 0.0 < self.rescale <= 1.0:
            raise ValueError(f"rescale must be in (0, 1], got {self.rescale}")
        bad = [t for t in self.iqa_tasks if t not in IQA_TASKS]
        if bad or not self.iqa_tasks:
            raise ValueError(f"iqa_tasks {list(self.iqa_tasks)}: choose one or more of {list(IQA_TASKS)}")
        if self.iqa_loss not in IQA_LOSSES:
            raise ValueError(f"iqa_loss must be one of {', '.join(map(repr, IQA_LOSSES))}, got {self.iqa_loss!r}")
        if self.iqa_loss != "answer" and not self.score_first:
            raise ValueError(f"iqa_loss {self.iqa_loss!r} needs score_first: the verdict must open the answer")

    def verdict_loss(self, seed: int) -> bool:
        """Whether the scoring answer of this seed carries the loss on its verdict only."""
        if self.iqa_loss == "mixed":
            return random.Random(f"verdict-loss:{seed}").random() < 0.5
        return self.iqa_loss == "verdict"


def fit_size(w: int, h: int, min_short: int, max_long: int, stride: int) -> tuple[int, int]:
    """Scale (w, h) so the short side reaches min_short without the long side passing
    max_long (the long side wins), then round each side down to a multiple of stride."""
    scale = min_short / min(w, h) if min(w, h) < min_short else 1.0
    if max(w, h) * scale > max_long:
        scale = max_long / max(w, h)
    return max(stride, int(w * scale) // stride * stride), max(stride, int(h * scale) // stride * stride)


def zoom_region(rng: random.Random, side: int, rescale: float, limit: int) -> int:
    """The side of the region to cut for a `side` px crop seen at a random down-scale
    factor, log-uniform in [rescale, 1] (at most `limit`, the photo's short side); the
    caller shrinks that region to `side`. Draws nothing when rescale is 1."""
    if rescale >= 1.0:
        return side
    return max(side, min(limit, round(side / rescale ** rng.random())))


def _lcm(a: int, b: int) -> int:
    import math

    return a * b // math.gcd(a, b)


def _default_degrade(image, preset, seed):
    from ..degradations import degrade

    return degrade(image, preset, seed=seed)


class SampleStream:
    """Sample n of a run, for any n (module docstring)."""

    def __init__(self, cfg: DataConfig, vae_stride: int = 16, vit_stride: int = 14,
                 degrade_fn: Optional[Callable] = None):
        """Strides: pixels per latent token (autoencoder downsample x latent patch) and
        the ViT patch; image sides are rounded to multiples of them."""
        self.cfg = cfg
        self.vae_stride, self.vit_stride = vae_stride, vit_stride
        self.degrade = degrade_fn or _default_degrade
        kinds = [k for k, r in cfg.ratios.items() if r > 0]
        missing = [k for k in kinds if k not in cfg.manifests]
        if not kinds or missing:
            raise ValueError(f"data: ratios name kinds without manifests: {missing or 'none > 0'}")
        cfg.check()
        self.lines = {k: read_jsonl(cfg.manifests[k]) for k in kinds}
        empty = [cfg.manifests[k] for k in kinds if not self.lines[k]]
        if empty:
            raise ValueError(f"data: empty manifests {empty}")
        if "iqa" in self.lines and "iqa" not in cfg.online:
            self.lines["iqa"] = [ln for ln in self.lines["iqa"] if ln.get("task", "score") in cfg.iqa_tasks]
            if not self.lines["iqa"]:
                raise ValueError(f"data: {cfg.manifests['iqa']} has no line of the tasks {list(cfg.iqa_tasks)}")
        bad = [k for k in cfg.online if k not in KINDS]
        if bad:
            raise ValueError(f"data.online: {bad} are not built kinds; choose from {list(KINDS)}")
        total = sum(cfg.ratios[k] for k in kinds)
        self.kinds = kinds
        self.cum = list(np.cumsum([cfg.ratios[k] / total for k in kinds]))

    def __getitem__(self, n: int) -> RawSample:
        rng = random.Random(f"{self.cfg.seed}:sample:{n}")
        kind = self.kinds[min(bisect.bisect_right(self.cum, rng.random()), len(self.kinds) - 1)]
        line = self.lines[kind][rng.randrange(len(self.lines[kind]))]
        if kind in self.cfg.online:
            line = {**line, **draw_degradation(kind, rng, iqa_tasks=self.cfg.iqa_tasks)}
        if kind.startswith("iqa"):
            return self._iqa(n, kind, line, rng)
        return self._restore(n, kind, line, rng)

    def _clean(self, line: Mapping, rng: random.Random, min_short: int, max_long: int,
               stride: int) -> Image.Image:
        img = load_image(line["image"])
        c = self.cfg.crop
        if c and min(img.size) > c:
            r = zoom_region(rng, c, self.cfg.rescale, min(img.size))
            x, y = rng.randrange(img.width - r + 1), rng.randrange(img.height - r + 1)
            img = img.crop((x, y, x + r, y + r))
            if r != c:
                img = img.resize((c, c), Image.BICUBIC)
        size = fit_size(*img.size, min_short, max_long, stride)
        return img if size == img.size else img.resize(size, Image.BICUBIC)

    def _restore(self, n: int, kind: str, line: Mapping, rng: random.Random) -> RawSample:
        cfg = self.cfg
        hq = self._clean(line, rng, cfg.res_min_short, cfg.res_max_long, self.vae_stride)
        lq, record = self.degrade(hq, line["preset"], line["seed"])
        if lq.size != hq.size:
            lq = lq.resize(hq.size, Image.BICUBIC)
        items = [RawItem("vae", image=lq, cfg=True), RawItem("vit", image=lq, cfg=True)]
        if kind == "interleaved":
            items += [RawItem("text", analyze_instruction(rng), cfg=True),
                      RawItem("text", analysis(record, line["seed"]).text, loss=True)]
        else:
            items.append(RawItem("text", simple_instruction(record, rng), cfg=True))
        items.append(RawItem("vae", image=hq, loss=True))
        return RawSample(kind, n, items, record)

    def _iqa(self, n: int, kind: str, line: Mapping, rng: random.Random) -> RawSample:
        cfg = self.cfg
        img = self._clean(line, rng, cfg.iqa_min_short, cfg.iqa_max_long,
                           _lcm(self.vit_stride, self.vae_stride))
        if kind == "iqa_real":
            s = iqa.scoring_sample(float(line["mos"]), "", line["seed"], cfg.score_first)
            return RawSample(kind, n, _vlm_items([img], s, cfg.verdict_loss(line["seed"])))
        task, seed = line.get("task", "score"), line["seed"]
        record = None
        lq = img
        if line.get("preset"):
            lq, record = self.degrade(img, line["preset"], seed)
            lq = lq if lq.size == img.size else lq.resize(img.size, Image.BICUBIC)
        if task == "describe":
            return RawSample(kind, n, _vlm_items([lq], iqa.description_sample(record, seed)), record)
        if task == "compare":
            lq_b, rec_b = self.degrade(img, line["preset_b"], seed + 1)
            lq_b = lq_b if lq_b.size == img.size else lq_b.resize(img.size, Image.BICUBIC)
            s = iqa.synthetic_comparison_sample(np.asarray(img), (np.asarray(lq), record),
                                                (np.asarray(lq_b), rec_b), seed)
            return RawSample(kind, n, _vlm_items([img, lq, lq_b], s), record)
        s = iqa.synthetic_scoring_sample(record, seed, score_first=cfg.score_first)
        return RawSample(kind, n, _vlm_items([lq], s, cfg.verdict_loss(seed)), record)


def _vlm_items(images: list[Image.Image], s: iqa.IQASample, verdict_loss: bool = False) -> list[RawItem]:
    items = [RawItem("vit", image=im) for im in images]
    head = s.verdict if verdict_loss and s.verdict and s.answer.startswith(s.verdict) else ""
    return items + [RawItem("text", s.question), RawItem("text", s.answer, loss=True, loss_prefix=head)]


def manifest_paths(folder: str | Path, kinds) -> dict[str, str]:
    """kind -> `manifest-<kind>.jsonl` in a `uare data build` folder."""
    return {k: str(Path(folder) / f"manifest-{k}.jsonl") for k in kinds}
