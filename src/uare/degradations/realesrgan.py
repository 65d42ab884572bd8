"""Real-ESRGAN's second-order degradation (x4), per metrics-degradation-facts.md §5.

Sampling and application are separate: `sample_realesrgan_steps` draws every parameter
of one sample (no pixels involved, so thousands of records cost milliseconds), and
`realesrgan_batch` applies the drawn steps to a batch of GT tensors. On the CPU each
sample runs its whole pipeline on one thread and the samples are spread over the cores;
on a GPU the full-resolution work (USM sharpening and the first blur, most of the
arithmetic) runs on the whole batch at once with one grouped convolution per kernel
size, and after the first random resize, which gives the samples different sizes, the
remaining, smaller steps run per sample.

Unlike the original, where the resize scales are drawn once per batch, every sample
draws all of its own parameters: a record then describes one image completely and the
output of a sample does not depend on its batch-mates.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from .apply import apply_steps
from .blur import kernel_severity
from .kernels import KernelConfig, kernel_from_params, sample_kernel
from .noise import sample_noise
from .ops import (RESIZE_MODES, filter2d, filter2d_each, quantize, seed_streams, torch_generator,
                  usm_sharpen)

PRESET = "realesrgan"


@dataclass(frozen=True)
class StageConfig:
    """One degradation stage: blur kernel, random resize, noise and JPEG ranges."""
    kernel: KernelConfig = field(default_factory=KernelConfig)
    resize_probs: tuple[float, float, float] = (0.2, 0.7, 0.1)  # up, down, keep
    resize_up: tuple[float, float] = (1.0, 1.5)
    resize_down: tuple[float, float] = (0.15, 1.0)
    gaussian_noise_prob: float = 0.5
    noise_sigma: tuple[float, float] = (1.0, 30.0)  # 0-255 scale
    poisson_scale: tuple[float, float] = (0.05, 3.0)
    grey_noise_prob: float = 0.4
    jpeg_quality: tuple[float, float] = (30.0, 95.0)


@dataclass(frozen=True)
class RealESRGANConfig:
    """train_realesrgan_x4plus.yml: two stages, then final sinc + JPEG in random order."""
    stage1: StageConfig = field(default_factory=StageConfig)
    stage2: StageConfig = field(default_factory=lambda: StageConfig(
        kernel=KernelConfig(sigma=(0.2, 1.5)), resize_probs=(0.3, 0.4, 0.3),
        resize_up=(1.0, 1.2), resize_down=(0.3, 1.0), noise_sigma=(1.0, 25.0),
        poisson_scale=(0.05, 2.5)))
    second_blur_prob: float = 0.8
    final_sinc_prob: float = 0.8
    final_sinc_sizes: tuple[int, ...] = (7, 9, 11, 13, 15, 17, 19, 21)
    final_sinc_omega: tuple[float, float] = (math.pi / 3, math.pi)
    resize_then_jpeg_prob: float = 0.5  # final order: [resize, sinc] then JPEG, else JPEG first
    scale: int = 4
    usm: dict = field(default_factory=lambda: {"radius": 50, "sigma": 8.0, "weight": 0.5, "threshold": 10.0})

    def __post_init__(self):
        for name in ("second_blur_prob", "final_sinc_prob", "resize_then_jpeg_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"RealESRGANConfig.{name} must be a probability")


DEFAULT_CONFIG = RealESRGANConfig()


def _resize_step(rng, cfg: StageConfig, base: tuple[int, int], stage: int) -> dict:
    """base: (h, w) the scale multiplies (the input for stage 1, the LQ size for stage 2)."""
    direction = str(rng.choice(("up", "down", "keep"), p=cfg.resize_probs))
    scale = (float(rng.uniform(*cfg.resize_up)) if direction == "up" else
             float(rng.uniform(*cfg.resize_down)) if direction == "down" else 1.0)
    mode = str(rng.choice(RESIZE_MODES))
    size = [max(1, int(base[1] * scale)), max(1, int(base[0] * scale))]  # [w, h]
    return {"type": "downsample", "op": "resize", "params": {
        "stage": stage, "direction": direction, "scale": scale, "mode": mode, "size": size}}


def _stage_tail(rng, cfg: StageConfig, base, stage) -> list[dict]:
    resize = _resize_step(rng, cfg, base, stage)
    op, params = sample_noise(rng, cfg.gaussian_noise_prob, cfg.noise_sigma, cfg.poisson_scale,
                              cfg.grey_noise_prob)
    return [resize, {"type": "noise", "op": op, "params": {**params, "stage": stage}}]


def sample_realesrgan_steps(rng: np.random.Generator, size: tuple[int, int],
                            cfg: RealESRGANConfig = DEFAULT_CONFIG) -> list[dict]:
    """Every step of one sample, in application order. size: (h, w) of the GT."""
    h, w = size
    lq = (h // cfg.scale, w // cfg.scale)
    if min(lq) < 1:
        raise ValueError(f"image of {w}x{h} is too small for x{cfg.scale} Real-ESRGAN degradation")
    fam1, k1 = sample_kernel(rng, cfg.stage1.kernel)
    fam2, k2 = sample_kernel(rng, cfg.stage2.kernel)
    steps = [{"type": "sharpen", "op": "usm", "params": dict(cfg.usm)},
             {"type": "blur", "op": fam1, "params": {**k1, "stage": 1}}]
    steps += _stage_tail(rng, cfg.stage1, (h, w), 1)
    steps.append({"type": "jpeg", "op": "jpeg", "params": {
        "quality": float(rng.uniform(*cfg.stage1.jpeg_quality)), "stage": 1}})
    if rng.uniform() < cfg.second_blur_prob:
        steps.append({"type": "blur", "op": fam2, "params": {**k2, "stage": 2}})
    steps += _stage_tail(rng, cfg.stage2, lq, 2)
    steps += _final_steps(rng, cfg, lq)
    return steps


def _final_steps(rng, cfg: RealESRGANConfig, lq: tuple[int, int]) -> list[dict]:
    resize = [{"type": "downsample", "op": "resize", "params": {
        "stage": "final", "direction": "down", "scale": 1.0 / cfg.scale,
        "mode": str(rng.choice(RESIZE_MODES)), "size": [lq[1], lq[0]]}}]
    if rng.uniform() < cfg.final_sinc_prob:
        resize.append({"type": "sinc", "op": "sinc", "params": {
            "size": int(rng.choice(cfg.final_sinc_sizes)),
            "omega_c": float(rng.uniform(*cfg.final_sinc_omega)), "stage": "final"}})
    jpeg = [{"type": "jpeg", "op": "jpeg", "params": {
        "quality": float(rng.uniform(*cfg.stage2.jpeg_quality)), "stage": "final"}}]
    return resize + jpeg if rng.uniform() < cfg.resize_then_jpeg_prob else jpeg + resize


def realesrgan_severity(steps: list[dict], size: tuple[int, int],
                        cfg: RealESRGANConfig = DEFAULT_CONFIG) -> dict:
    """Per-type strength in [0, 1], relative to this pipeline's own ranges."""
    def clip(v):
        return float(np.clip(v, 0.0, 1.0))
    # The USM step sharpens the clean image that both the degradations and the training
    # target start from, so it is not a defect of the LQ image and gets no severity.
    sev: dict[str, float] = {}
    s1, s2 = cfg.stage1, cfg.stage2
    for st in steps:
        t, p = st["type"], st["params"]
        if t == "blur":
            v = kernel_severity(st["op"], p, s1.kernel.sigma)
        elif t == "noise":
            lo, hi = (s1.noise_sigma if st["op"] == "gaussian" else s1.poisson_scale)
            v = clip(((p["sigma"] if st["op"] == "gaussian" else p["scale"]) - lo) / (hi - lo))
        elif t == "jpeg":
            lo, hi = s1.jpeg_quality
            v = clip((hi - p["quality"]) / (hi - lo))
        elif t == "sinc":
            lo, hi = cfg.final_sinc_omega
            v = clip((hi - p["omega_c"]) / (hi - lo))
        else:
            continue
        sev[t] = max(sev.get(t, 0.0), v)
    # Down-sampling: how small the image got on its way (log scale), where 1 is the
    # smallest the ranges allow (stage-2 down-scale of the x4 LQ size).
    rel = min(min(st["params"]["size"][1] / size[0], st["params"]["size"][0] / size[1])
              for st in steps if st["type"] == "downsample")
    floor = min(s1.resize_down[0], s2.resize_down[0] / cfg.scale)
    sev["downsample"] = clip(math.log(1 / rel) / math.log(1 / floor))
    return sev


def sample_realesrgan(seed: int, size: tuple[int, int] = (400, 400),
                      cfg: RealESRGANConfig = DEFAULT_CONFIG) -> dict:
    """The record of `degrade(img, "realesrgan", seed)` for an image of size (h, w),
    without making the image."""
    rng, _ = seed_streams(seed)
    steps = sample_realesrgan_steps(rng, size, cfg)
    h, w = size
    return {"preset": PRESET, "seed": int(seed), "scale": cfg.scale, "input_size": [w, h],
            "output_size": [w // cfg.scale, h // cfg.scale], "steps": steps,
            "severity": realesrgan_severity(steps, size, cfg)}


def realesrgan_batch(gt: torch.Tensor, seeds: Sequence[int],
                     cfg: RealESRGANConfig = DEFAULT_CONFIG,
                     records: Optional[Sequence[dict]] = None, chunk: Optional[int] = None,
                     workers: Optional[int] = None):
    """Degrade a batch of GT images, each with its own seed.

    gt: (B, 3, H, W) float in [0, 1]. Returns (lq (B, 3, H/4, W/4) quantised to 8 bits,
    gt_usm (B, 3, H, W): the sharpened GT that Real-ESRGAN trains against, records).
    Sample i is the same whatever batch it is in, and equals degrade(..., seed=seeds[i]).

    On the CPU (chunk None) every sample runs its whole pipeline on its own, `workers`
    threads at a time (default: torch's thread count), each thread with one torch thread.
    Measured with bench/degradations.py on 2 cores, 32 images: on an otherwise idle
    machine a little quicker than one image at a time with each op split over two torch
    threads (35-38 vs 31-36 images/s), and it keeps both threads working when another
    job holds a core, where split ops wait on each other (18-21 vs 1.6 images/s).
    chunk: samples sharpened and blurred together at full resolution with grouped
    convolutions, the remaining steps then per sample; the default on a GPU (the whole
    batch). The per-sample kernels, noise and codec parameters are the same either way.
    """
    if gt.ndim != 4 or gt.shape[1] != 3:
        raise ValueError(f"realesrgan_batch: expected (B, 3, H, W), got {tuple(gt.shape)}")
    if len(seeds) != gt.shape[0]:
        raise ValueError(f"realesrgan_batch: {gt.shape[0]} images but {len(seeds)} seeds")
    h, w = gt.shape[-2:]
    if records is None:
        records = [sample_realesrgan(s, (h, w), cfg) for s in seeds]
    if chunk is None and gt.device.type != "cpu":
        chunk = gt.shape[0]
    if chunk is not None:
        return _batch_chunked(gt, seeds, records, max(1, chunk))
    b = gt.shape[0]
    lq = torch.empty((b, 3, h // cfg.scale, w // cfg.scale), dtype=torch.float32)
    gt_usm = torch.empty_like(gt, dtype=torch.float32)

    def one(i: int) -> None:
        lq[i:i + 1] = _degrade_one(gt[i:i + 1], records[i], seeds[i], gt_usm[i:i + 1])

    run_each(one, b, workers or torch.get_num_threads())
    return lq, gt_usm, list(records)


def _degrade_one(gt: torch.Tensor, rec: dict, seed: int, usm_out: torch.Tensor) -> torch.Tensor:
    """One sample, (1, 3, H, W): USM (written to usm_out), the first blur, then the
    record's remaining steps. Returns the quantised LQ image."""
    usm = rec["steps"][0]["params"]
    with torch.no_grad():
        sharp = usm_sharpen(gt.float(), usm["weight"], usm["threshold"], usm["radius"], out=usm_out)
        return _after_first_blur(filter2d(sharp, _first_kernel(rec)), rec, seed)


def _first_kernel(rec: dict) -> torch.Tensor:
    return kernel_from_params(rec["steps"][1]["op"], rec["steps"][1]["params"])


def _after_first_blur(x: torch.Tensor, rec: dict, seed: int) -> torch.Tensor:
    """The record's steps after USM and the first blur, from the sample's own noise
    stream; returns the quantised LQ image."""
    return quantize(apply_steps(x, rec["steps"][2:], torch_generator(seed_streams(seed)[1])))


_SET_THREADS = threading.Lock()


def run_each(fn: Callable[[int], None], n: int, workers: int) -> None:
    """fn(0), ..., fn(n - 1) on up to `workers` threads, each limited to one torch thread
    (thread counts are per thread in torch's OpenMP and MKL back ends, so the caller's
    own setting is untouched; the global default that new threads start from is put
    back afterwards). fn(i) must only write its own outputs; with one worker, or one
    item, everything runs in the calling thread at its own thread count."""
    workers = max(1, min(workers, n))
    if workers == 1:
        for i in range(n):
            fn(i)
        return
    caller_threads = torch.get_num_threads()
    lock, todo, errors = threading.Lock(), iter(range(n)), []
    # Thread counts are set one thread at a time, and no thread starts work before all
    # have set theirs: torch also resets its thread pools and oneDNN cache then.
    ready = threading.Barrier(workers)

    def loop() -> None:
        with _SET_THREADS:
            torch.set_num_threads(1)
        ready.wait()
        while not errors:
            with lock:
                i = next(todo, None)
            if i is None:
                return
            try:
                fn(i)
            except BaseException as e:  # re-raised in the caller below
                errors.append(e)

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with _SET_THREADS:
        torch.set_num_threads(caller_threads)
    if errors:
        raise errors[0]


def _batch_chunked(gt: torch.Tensor, seeds: Sequence[int], records: Sequence[dict], chunk: int):
    usm = records[0]["steps"][0]["params"]
    gt_usm, outs = torch.empty_like(gt, dtype=torch.float32), []
    with torch.no_grad():
        for start in range(0, gt.shape[0], chunk):
            part = slice(start, start + chunk)
            gt_usm[part] = usm_sharpen(gt[part].float(), usm["weight"], usm["threshold"], usm["radius"])
            x = filter2d_each(gt_usm[part], [_first_kernel(r).to(gt.device) for r in records[part]])
            outs += [_after_first_blur(x[i:i + 1], rec, seed)
                     for i, (rec, seed) in enumerate(zip(records[part], seeds[part]))]
    return torch.cat(outs), gt_usm, list(records)
