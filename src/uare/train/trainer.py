"""The training loop: AdamW, linear warm-up then constant LR, grad clip, EMA, resumable.

Trainable parameters (`train.trainable`):
- "restoration" (stage 1): the parameters only VAE latent tokens pass through
  (bagel-facts §1 routing): every layer's gen expert, the gen final norm, vae2llm,
  llm2vae, the time embedder (the latent position table is fixed sin-cos) and, for an
  anchored head (flow_anchor "condition"), anchor2llm. The und
  expert, ViT, connector, token embeddings and LM head stay frozen, bit for bit.
- "understanding": the complement of "restoration" (und expert, ViT, connector, token
  embeddings, LM head): for assessment-only training, which leaves the gen side bit
  for bit. Restoration still reads the und tokens' keys and values, so it can change.
- "all" (stage 2): every parameter of the model; the autoencoder is not a parameter of
  the model (Bagel keeps it apart) and the tokenizer has none, so both stay fixed.
`train.freeze_vit` (Bagel's flag of that name) also keeps every `vit.*` parameter fixed.
"""
from __future__ import annotations

import csv
import math
import re
import sys
import time
from pathlib import Path
from typing import Optional

import torch

from ..imageio import append_jsonl
from . import checkpoint as ckpt
from .parallel import DistEnv, full_tensor, like

RESTORATION = re.compile(r"^llm\.layers\.\d+\.experts\.gen\.|^llm\.norm\.gen\.|^vae2llm\.|"
                         r"^llm2vae\.|^time_embedder\.|^anchor2llm\.")
WRAP = "_checkpoint_wrapped_module."


def _minutes(seconds: float) -> str:
    """m:ss, never negative (the box is checked between steps, so the last one overruns)."""
    m, sec = divmod(max(0, round(seconds)), 60)
    return f"{m}:{sec:02d}"


def clean_name(name: str) -> str:
    return name.replace(WRAP, "")


def set_trainable(model: torch.nn.Module, mode: str, freeze_vit: bool = False) -> list[str]:
    """Freeze all but the chosen side (and the ViT with freeze_vit); returns the names
    left trainable."""
    names = []
    for name, p in model.named_parameters():
        n = clean_name(name)
        fixed_table = n.endswith("pos_embed.pos_embed")  # fixed sin-cos, never trained
        fixed_vit = freeze_vit and n.startswith("vit.")
        side = {"all": True, "restoration": bool(RESTORATION.match(n)),
                "understanding": not RESTORATION.match(n)}[mode]
        on = not fixed_table and not fixed_vit and side
        p.requires_grad_(on)
        if on:
            names.append(n)
    if not names:
        raise ValueError(f"train.trainable={mode!r} leaves no trainable parameter")
    return names


class MetricsLog:
    """metrics.csv (appended across resumes) and TensorBoard when installed and asked for."""

    def __init__(self, folder: Path, tensorboard: bool):
        self.path = folder / "metrics.csv"
        self.fields = ["step", "loss", "mse", "ce", "lr", "grad_norm", "tokens", "tokens_per_s"]
        if not self.path.exists():
            with open(self.path, "w", newline="") as f:
                csv.writer(f).writerow(self.fields)
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(folder / "tensorboard"))
            except ImportError:
                pass

    def write(self, row: dict) -> None:
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow([row.get(k, "") for k in self.fields])
        if self.tb:
            for k in self.fields[1:]:
                self.tb.add_scalar(f"train/{k}", row[k], row["step"])

    def close(self) -> None:
        if self.tb:
            self.tb.close()


class Trainer:
    """One run of a recipe; `train()` resumes from the newest complete checkpoint."""

    def __init__(self, recipe, model: torch.nn.Module, objective, env: Optional[DistEnv] = None,
                 progress: bool = True):
        self.r, self.model, self.obj = recipe, model, objective
        self.env = env or DistEnv()
        self.out = Path(recipe.train.out_dir)
        self.ckpt_dir = self.out / "checkpoints"
        self.progress = progress
        self.trainable = set_trainable(model, recipe.train.trainable, recipe.train.freeze_vit)
        self.params = {clean_name(n): p for n, p in model.named_parameters() if p.requires_grad}
        o = recipe.optim
        self.opt = torch.optim.AdamW(list(self.params.values()), lr=o.lr, betas=tuple(o.betas),
                                     eps=o.eps, weight_decay=o.weight_decay)
        self.ema = {n: p.detach().clone() for n, p in self.params.items()}
        self.step = 0
        self._pool = None
        self._ahead: dict = {}

    # ---- state -------------------------------------------------------------------
    def lr_at(self, step: int) -> float:
        """Linear warm-up over warmup_steps, then constant (Table A.1)."""
        w = self.r.optim.warmup_steps
        return self.r.optim.lr * min(1.0, (step + 1) / w) if w > 0 else self.r.optim.lr

    def _full_states(self) -> tuple[dict, dict, dict]:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

        opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
        msd, osd = get_state_dict(self.model, self.opt, options=opts)
        # full state dicts land on rank 0 only (the others get empty dicts)
        msd = {clean_name(k): v for k, v in msd.items()}
        osd["state"] = {clean_name(k): v for k, v in osd.get("state", {}).items()}
        for g in osd.get("param_groups", []):
            g["params"] = [clean_name(k) for k in g["params"]]
        ema = dict(msd)
        for n, t in self.ema.items():
            ema[n] = full_tensor(t).cpu()  # collective when sharded: every rank runs it
        return msd, ema, osd

    def save(self) -> None:
        msd, ema, osd = self._full_states()  # collective: every rank takes part
        ckpt.write_rank_rng(self.ckpt_dir, self.step, self.env.rank)
        self.env.barrier()
        if self.env.main:
            state = ckpt.TrainerState(self.step, self.step * self.r.data.samples_per_step, self.env.world)
            ae = getattr(self.model, "autoencoder", None)
            ckpt.write_main(self.ckpt_dir, state, msd, ema, osd, self.r.checkpoint.keep_latest,
                            ae.state_dict() if ae is not None else None)
        self.env.barrier()

    def resume(self) -> bool:
        folder = ckpt.latest(self.ckpt_dir)
        if folder is None:
            return False
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

        got = ckpt.load(folder, self.env.rank)
        names = {clean_name(n): n for n, _ in self.model.named_parameters()}
        names.update({clean_name(n): n for n, _ in self.model.named_buffers()})
        msd = {names.get(k, k): v for k, v in got.model.items()}
        osd = got.optimizer
        osd["state"] = {names.get(k, k): v for k, v in osd["state"].items()}
        for g in osd["param_groups"]:
            g["params"] = [names.get(k, k) for k in g["params"]]
        set_state_dict(self.model, self.opt, model_state_dict=msd, optim_state_dict=osd,
                       options=StateDictOptions(full_state_dict=True))
        for n, p in self.params.items():
            self.ema[n] = like(p.detach(), got.ema[n])
        if got.ae is not None and getattr(self.model, "autoencoder", None) is not None:
            self.model.autoencoder.load_state_dict(got.ae)
        if got.rng is not None:
            ckpt.set_rng_state(got.rng)
        self.step = got.state.step
        return True

    # ---- one step ----------------------------------------------------------------
    def _packs(self, step: int) -> list:
        """This rank's packs for a step; with data.prefetch the next step's are started in
        a thread now (packs are a pure function of the step, so order cannot matter)."""
        if not self.r.data.prefetch:
            return self.obj.packs(step)
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(1, thread_name_prefix="uare-data")
        fut = self._ahead.pop(step, None)
        if step + 1 < self.r.train.steps:
            self._ahead[step + 1] = self._pool.submit(self.obj.packs, step + 1)
        return fut.result() if fut is not None else self.obj.packs(step)

    def _stop_prefetch(self) -> None:
        if self._pool is not None:
            for f in self._ahead.values():
                f.cancel()
            self._pool.shutdown(wait=True)
            self._pool, self._ahead = None, {}
        if hasattr(self.obj, "close"):
            self.obj.close()

    def train_step(self) -> dict:
        t0 = time.perf_counter()
        packs = self._packs(self.step)
        counts = self.env.all_reduce(self.obj.counts(packs))
        # FSDP needs the same number of forward passes on every rank: pad with zero-weight repeats
        n = int(self.env.all_reduce(torch.tensor([float(len(packs))]), op="max")[0])
        stats = torch.zeros(3, dtype=torch.float64)
        lr = self.lr_at(self.step)
        for g in self.opt.param_groups:
            g["lr"] = lr
        self.opt.zero_grad(set_to_none=True)
        for i in range(n):
            loss, s = self.obj.loss(self.model, packs[min(i, len(packs) - 1)], counts, self.env.device)
            if i >= len(packs):
                loss = loss * 0.0
            else:
                stats += torch.tensor([float(loss.detach()) / self.env.world, s["mse"], s["ce"]], dtype=torch.float64)
            loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(list(self.params.values()), self.r.optim.grad_clip)
        self.opt.step()
        self._update_ema()
        self.step += 1
        stats = self.env.all_reduce(stats)
        dt = time.perf_counter() - t0
        return {"step": self.step, "loss": float(stats[0]), "mse": float(stats[1]), "ce": float(stats[2]),
                "lr": lr, "grad_norm": float(full_tensor(norm)), "tokens": int(counts[2]),
                "tokens_per_s": float(counts[2]) / dt}

    @torch.no_grad()
    def _update_ema(self) -> None:
        w = 1.0 - self.r.train.ema_decay
        for n, p in self.params.items():
            self.ema[n].lerp_(p.detach(), w)

    def export(self, folder: Path) -> None:
        """The EMA weights as a model folder (config, model, autoencoder, tokenizer) that
        `UAREModel.from_pretrained` loads: the next stage's `model.init`."""
        if self.env.world == 1:  # no collective needed: the model's own tensors, EMA on top
            ema = {clean_name(k): v.detach().cpu() for k, v in self.model.state_dict().items()}
            ema.update({n: t.detach().cpu() for n, t in self.ema.items()})
        else:
            _, ema, _ = self._full_states()
        if not self.env.main:
            return
        from ..model import UAREModel

        with torch.device("meta"):
            out = UAREModel(self.model.cfg)
        out.load_state_dict(ema, assign=True, strict=True)
        object.__setattr__(out, "autoencoder", self.model.autoencoder)
        tok = getattr(self.obj, "tok", None)
        if tok is not None:
            out.set_tokenizer(tok)
        out.save_pretrained(folder)

    # ---- the loop ----------------------------------------------------------------
    def train(self, max_steps: Optional[int] = None, max_seconds: Optional[float] = None,
              export_to: Optional[Path] = None) -> list[dict]:
        """Run to train.steps, or stop earlier after max_steps more steps or once max_seconds
        have passed (checked between steps); checkpoints every checkpoint.every steps and
        where it stops, so a stopped run resumes. At train.steps the EMA weights go to
        out_dir/final; export_to writes them wherever the run stops (a time-boxed job's
        result). Returns this call's metric rows."""
        t_start = time.monotonic()
        self.resume()
        self.out.mkdir(parents=True, exist_ok=True)
        if self.env.main:
            # the resolved recipe of every call (overrides included), so a finished run
            # says how it was made, resumes with other settings too
            append_jsonl(self.out / "recipes.jsonl", {"from_step": self.step, "recipe": self.r.to_dict()})
        log = MetricsLog(self.out, self.r.log.tensorboard) if self.env.main else None
        end = self.r.train.steps if max_steps is None else min(self.r.train.steps, self.step + max_steps)
        rows, stopped = [], False
        bar = self._bar(end)
        try:
            while self.step < end:
                if max_seconds is not None and rows and self._time_up(t_start, max_seconds):
                    stopped = self.step % self.r.checkpoint.every != 0  # else saved just now
                    break
                row = self.train_step()
                if not math.isfinite(row["loss"]):
                    raise FloatingPointError(f"loss is {row['loss']} at step {row['step']}")
                rows.append(row)
                if log and (self.step % self.r.log.every == 0 or self.step == end):
                    log.write(row)
                if bar:
                    bar.update(1)
                    # a time-boxed run ends by the clock, long before train.steps: the bar's
                    # own ETA is for the steps, so the box's remaining time is shown beside it
                    left = ({} if max_seconds is None else
                            {"box_left": _minutes(max_seconds - (time.monotonic() - t_start))})
                    bar.set_postfix(loss=f"{row['loss']:.4f}", tok_s=f"{row['tokens_per_s']:.0f}", **left)
                if self.step % self.r.checkpoint.every == 0 or self.step == end:
                    self.save()
            if self.step == self.r.train.steps and rows:
                self.export(self.out / "final")
            if export_to is not None and self.step > 0:
                self.export(Path(export_to))
            if stopped:  # after the export: a time-boxed job's result comes first
                self.save()
        finally:
            self._stop_prefetch()
            if bar:
                bar.close()
            if log:
                log.close()
        return rows

    def _time_up(self, t_start: float, max_seconds: float) -> bool:
        """Whether any rank has run past max_seconds: every rank must stop at the same step."""
        late = float(time.monotonic() - t_start > max_seconds)
        return bool(self.env.all_reduce(torch.tensor([late]), op="max")[0] > 0)

    def _bar(self, end: int):
        if not (self.progress and self.env.main):
            return None
        from tqdm import tqdm

        return tqdm(total=end, initial=self.step, desc=f"train {self.r.name}", file=sys.stderr,
                    dynamic_ncols=True)
