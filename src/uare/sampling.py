"""Sampling as pure functions: the flow schedule, the Euler loop, classifier-free guidance
and text generation.

Nothing here knows about the model: velocities and logits come from callables, so each
piece is tested with fakes and the pipeline wires them to the KV-cached model.

Conventions (bagel-facts §3): time runs from t=1 (noise) to t=0 (data), the velocity
predicts (noise - data), and an Euler step is x <- x - v * (t_i - t_{i+1}).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch

RENORM_TYPES = ("global", "channel", "text_channel", "none")


# ---- flow matching ------------------------------------------------------------------

def shift_timesteps(t: torch.Tensor, shift: float) -> torch.Tensor:
    """t' = s*t / (1 + (s-1)*t): s > 1 spends more of the steps near the noisy end."""
    if shift <= 0:
        raise ValueError(f"timestep shift must be positive, got {shift}")
    return shift * t / (1.0 + (shift - 1.0) * t)


def _number_in(value, name: str, span: str, inside: Callable[[float], bool]) -> float:
    """value (a number or its text) as a float, or ValueError naming the setting and span."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in {span}, got {value!r}") from None
    if not inside(number):   # nan fails every comparison, so it is refused too
        raise ValueError(f"{name} must be in {span}, got {number:g}")
    return number


def check_strength(value, name: str = "strength") -> float:
    """img2img strength (the start time of sampling) as a float in (0, 1], or ValueError."""
    return _number_in(value, name, "(0, 1]", lambda v: 0.0 < v <= 1.0)


def check_temperature(value, name: str = "temperature") -> float:
    """Scale of the starting noise as a float in [0, 2], or ValueError."""
    return _number_in(value, name, "[0, 2]", lambda v: 0.0 <= v <= 2.0)


def check_mix(value, name: str = "mix"):
    """Share of the model's change an output keeps: a float in [0, 1], or "auto" (the
    noise-adaptive share, uare.fidelity); else ValueError."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    return _number_in(value, name, "[0, 1] (or auto)", lambda v: 0.0 <= v <= 1.0)


def flow_timesteps(num_steps: int, shift: float = 1.0, start: float = 1.0) -> torch.Tensor:
    """The `num_steps` time points from `start` to 0 (float64, shape (num_steps,)).

    There are num_steps - 1 model evaluations: one per interval, as in Bagel. start < 1
    (img2img strength) keeps the shifted schedule's shape, scaled into [0, start], so a
    partly noised input spends the same number of evaluations as pure noise.
    """
    if num_steps < 2:
        raise ValueError(f"need at least 2 timesteps (1 model evaluation), got {num_steps}")
    start = check_strength(start, "start time (strength)")
    t = torch.linspace(1.0, 0.0, num_steps, dtype=torch.float64)
    return start * shift_timesteps(t, shift)


VelocityFn = Callable[[torch.Tensor, float], torch.Tensor]


def euler_sample(velocity_fn: VelocityFn, x: torch.Tensor, timesteps: Sequence[float],
                 callback: Optional[Callable[[int, int], None]] = None) -> torch.Tensor:
    """Integrate dx/dt = v from timesteps[0] down to timesteps[-1].

    velocity_fn(x, t) -> v has x's shape; `callback(step, total)` is told after each step
    (progress bars). Returns the final x (same shape and dtype as the input x).
    """
    ts = [float(t) for t in timesteps]
    total = len(ts) - 1
    for i in range(total):
        v = velocity_fn(x, ts[i])
        x = x - v.to(x.dtype) * (ts[i] - ts[i + 1])
        if callback is not None:
            callback(i + 1, total)
    return x


# ---- classifier-free guidance -------------------------------------------------------

@dataclass(frozen=True)
class CfgBranch:
    """One unconditional context and how strongly to guide away from it.

    name: "text" (context without the instruction) or "image" (context without the
    images); the pipeline maps each name to a forked KV cache.
    """
    name: str
    scale: float


@dataclass(frozen=True)
class GuidanceConfig:
    """Bagel's CFG knobs. Defaults are Bagel's editing defaults (app.py / notebook).

    text_scale <= 1 turns guidance off entirely (no image guidance either), as in Bagel;
    the scales act only for interval[0] < t <= interval[1]; renorm_min in [0, 1] bounds
    how much the renormalisation may shrink the guided velocity (1.0 disables it).
    """
    text_scale: float = 4.0
    img_scale: float = 2.0
    interval: tuple[float, float] = (0.0, 1.0)
    renorm_type: str = "text_channel"
    renorm_min: float = 0.0

    def __post_init__(self):
        if self.renorm_type not in RENORM_TYPES:
            raise ValueError(f"renorm_type must be one of {RENORM_TYPES}, got {self.renorm_type!r}")
        lo, hi = self.interval
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"cfg interval must satisfy 0 <= lo <= hi <= 1, got {self.interval}")
        if not 0.0 <= self.renorm_min <= 1.0:
            raise ValueError(f"renorm_min must be in [0, 1], got {self.renorm_min}")

    def contexts(self) -> tuple[str, ...]:
        """Names of the unconditional contexts some step may need (none: guidance off)."""
        if self.text_scale <= 1.0 or self.interval[0] >= self.interval[1]:
            return ()
        return ("text", "image") if self.img_scale > 1.0 else ("text",)

    def branches(self, t: float) -> list[CfgBranch]:
        """The unconditional branches to evaluate at time t, in combination order.

        Empty when guidance is off at t, so the sampler skips those forward passes.
        """
        lo, hi = self.interval
        if not (lo < t <= hi) or self.text_scale <= 1.0:
            return []
        out = [CfgBranch("text", self.text_scale)]
        if self.img_scale > 1.0:
            out.append(CfgBranch("image", self.img_scale))
        return out


def _norm(v: torch.Tensor, per_token: bool) -> torch.Tensor:
    """L2 norm per token (last dim) or over each sample's tokens x channels.

    v is (tokens, channels) or (batch, tokens, channels); the result broadcasts against v.
    """
    if per_token:
        return torch.linalg.vector_norm(v, dim=-1, keepdim=True)
    dims = tuple(range(v.ndim - 2, v.ndim)) if v.ndim >= 2 else (0,)
    return torch.linalg.vector_norm(v, dim=dims, keepdim=True)


def _renorm(guided: torch.Tensor, v_cond: torch.Tensor, per_token: bool, lo: float) -> torch.Tensor:
    """Shrink `guided` so its norm never exceeds the conditional velocity's norm."""
    ratio = _norm(v_cond, per_token) / (_norm(guided, per_token) + 1e-8)
    return guided * ratio.clamp(min=lo, max=1.0)


def cfg_combine(v_cond: torch.Tensor, uncond: Sequence[tuple[CfgBranch, torch.Tensor]],
                renorm_type: str = "global", renorm_min: float = 0.0) -> torch.Tensor:
    """Chain guidance over the branches: v <- v_b + s_b * (v - v_b) for each (b, v_b).

    With Bagel's [text, image] this is v_txt = v_t + s_t(v_c - v_t), then
    v' = v_i + s_i(v_txt - v_i). Renormalisation against ||v_c||: "global" and
    "channel" rescale the final v' (whole sample / per token); "text_channel" rescales
    only the result of the first branch, per token. No branches: v_cond unchanged.
    Shapes: (tokens, channels) or (batch, tokens, channels); all inputs alike.
    """
    if renorm_type not in RENORM_TYPES:
        raise ValueError(f"renorm_type must be one of {RENORM_TYPES}, got {renorm_type!r}")
    v = v_cond
    for i, (branch, v_b) in enumerate(uncond):
        v = v_b + branch.scale * (v - v_b)
        if i == 0 and renorm_type == "text_channel":
            v = _renorm(v, v_cond, per_token=True, lo=renorm_min)
    if uncond and renorm_type in ("global", "channel"):
        v = _renorm(v, v_cond, per_token=renorm_type == "channel", lo=renorm_min)
    return v


def guided_velocity(velocity: Callable[[str, torch.Tensor, float], torch.Tensor],
                    guidance: GuidanceConfig) -> VelocityFn:
    """Turn a per-context velocity velocity(context_name, x, t) into a guided VelocityFn.

    The conditional context is called "full"; branches only run where guidance is active.
    """
    def fn(x: torch.Tensor, t: float) -> torch.Tensor:
        v_cond = velocity("full", x, t)
        uncond = [(b, velocity(b.name, x, t)) for b in guidance.branches(t)]
        return cfg_combine(v_cond, uncond, guidance.renorm_type, guidance.renorm_min)

    return fn


# ---- text generation ----------------------------------------------------------------

@dataclass(frozen=True)
class TextConfig:
    """How to pick tokens: temperature 0 is greedy (deterministic)."""
    max_new_tokens: int = 256
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.top_k < 0:
            raise ValueError("need temperature >= 0, 0 < top_p <= 1 and top_k >= 0")


def next_token(logits: torch.Tensor, cfg: TextConfig,
               generator: Optional[torch.Generator] = None) -> int:
    """One token id from a (vocab,) logit vector: argmax, or a top-k/top-p sample."""
    logits = logits.float().reshape(-1)
    if cfg.temperature == 0.0:
        return int(torch.argmax(logits))
    logits = logits / cfg.temperature
    if cfg.top_k > 0:
        kth = torch.topk(logits, min(cfg.top_k, logits.numel())).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if cfg.top_p < 1.0:
        sorted_p, order = torch.sort(probs, descending=True)
        # keep the smallest prefix whose mass reaches top_p (always at least one token)
        drop = torch.cumsum(sorted_p, 0) - sorted_p >= cfg.top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(0, order, sorted_p)
    return int(torch.multinomial(probs, 1, generator=generator))


def generate_tokens(decode_step: Callable[[int], torch.Tensor], logits: torch.Tensor,
                    end_id: int, cfg: TextConfig = TextConfig(),
                    generator: Optional[torch.Generator] = None,
                    feed_end: bool = True,
                    stop: Optional[Callable[[list[int]], bool]] = None) -> list[int]:
    """Autoregressive decoding against a KV cache.

    logits: (vocab,) next-token logits after the prompt. decode_step(token_id) appends
    one token to the cache and returns the next logits. Stops after `end_id` (not in the
    result; fed to the cache when feed_end, so the text segment is closed there), after
    cfg.max_new_tokens tokens, or once stop(tokens so far) is true (the cache then holds
    them all and the segment stays open, so the caller can go on writing).
    """
    out: list[int] = []
    for _ in range(cfg.max_new_tokens):
        tok = next_token(logits, cfg, generator)
        if tok == end_id:
            if feed_end:
                decode_step(tok)
            break
        out.append(tok)
        logits = decode_step(tok)
        if stop is not None and stop(out):
            break
    return out


# ---- Q-Align style scoring ----------------------------------------------------------

LEVELS = ("bad", "poor", "fair", "good", "excellent")  # -> 1..5


def level_probabilities(logits: torch.Tensor, level_ids: Sequence[int]) -> torch.Tensor:
    """Softmax over the logits of the five level tokens only (shape (5,), sums to 1)."""
    ids = torch.as_tensor(list(level_ids), dtype=torch.long, device=logits.device)
    return torch.softmax(logits.float().reshape(-1)[ids], dim=-1)


def level_score(logits: torch.Tensor, level_ids: Sequence[int]) -> float:
    """Probability-weighted mean level, bad..excellent -> 1..5: continuous, in [1, 5]."""
    p = level_probabilities(logits, level_ids)
    return float((p * torch.arange(1, len(level_ids) + 1, dtype=p.dtype)).sum())

