"""The UARE training objective: samples -> packs -> flow noise -> RF + lambda * CE.

World-size invariance. Everything random about sample n (kind, line, crop, degradation,
CFG dropout, VAE posterior sample, timestep and noise) is drawn from generators seeded by
(recipe seed, n), so a sample is the same whichever rank builds it and whenever it is
built. Step s uses global samples [s*B, (s+1)*B); rank r takes its contiguous B/world
share. Losses are sums over tokens divided by the global token counts, times world size
because FSDP averages gradients over ranks (bagel-facts §4 "Loss reduction"), so a run on
N processes computes the same gradient as one process with the same global batch.

Flow matching (bagel-facts §4): t = sigmoid(tau), tau ~ N(0, 1), shifted by
s t / (1 + (s - 1) t); x_t = (1 - t) x0 + t eps; target v = eps - x0; MSE is the mean over
the 64 channels of a token, summed over tokens. The noise is drawn here, per sample (not
per pack as `losses.add_flow_noise` does), so that it does not depend on how samples
were packed; the reduction is `losses.compute_losses`.
"""
from __future__ import annotations

import random
import threading
from dataclasses import dataclass

import torch

from ..data.dataset import RawSample, SampleStream
from ..data.packing import DropoutConfig, dropout_mask, item_tokens, pack, to_items
from ..losses import compute_losses, shift_timesteps
from ..sequence import PackedSequence, build_packed


@dataclass
class Pack:
    packed: PackedSequence
    samples: list[int]        # global sample indexes
    tokens: int


_STREAM = None


def _worker_init(stream: SampleStream) -> None:
    global _STREAM
    torch.set_num_threads(1)  # one core per worker: the pool is the parallelism
    _STREAM = stream


def _worker_sample(n: int) -> RawSample:
    return _STREAM[n]


def _generator(seed: int, n: int, what: str, device="cpu") -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(random.Random(f"{seed}:{what}:{n}").getrandbits(63))
    return g


class Objective:
    """Builds this rank's packs for a step and computes their loss."""

    def __init__(self, model, tokenizer, stream: SampleStream, samples_per_step: int,
                 max_tokens: int, dropout: DropoutConfig, shift: float,
                 ce_weight: float, mse_weight: float, seed: int, rank: int = 0, world: int = 1,
                 workers: int = 0):
        if samples_per_step % world:
            raise ValueError(f"data.samples_per_step ({samples_per_step}) must be divisible by "
                             f"the number of processes ({world})")
        self.model, self.tok, self.stream = model, tokenizer, stream
        self.B, self.max_tokens, self.dropout = samples_per_step, max_tokens, dropout
        self.shift, self.ce_w, self.mse_w, self.seed = shift, ce_weight, mse_weight, seed
        self.rank, self.world, self.workers = rank, world, workers
        self._pool, self._futures, self._lock = None, {}, threading.Lock()
        cfg = model.cfg
        self.vae_stride = cfg.vae.downsample * cfg.latent_patch_size
        self.vit_stride = cfg.vit.stride

    def sample_indexes(self, step: int) -> list[int]:
        per = self.B // self.world
        start = step * self.B + self.rank * per
        return list(range(start, start + per))

    def _encode(self, pix: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        ae = self.model.autoencoder
        with torch.no_grad():
            return ae.encode(pix[None].to(g.device), sample=True, generator=g)[0].cpu()

    def _items(self, n: int, sample: RawSample) -> list:
        rng = random.Random(f"{self.seed}:cfg:{n}")
        dropped = dropout_mask(sample.items, self.dropout, rng)
        # the posterior sample is drawn where the autoencoder lives, from sample n's own seed
        g = _generator(self.seed, n, "vae", next(self.model.autoencoder.parameters()).device)
        return to_items(sample, self.tok.encode, lambda p: self._encode(p, g), dropped)

    def raw_samples(self, step: int, workers: int = 0, ahead: int = 2) -> list[RawSample]:
        """The step's raw samples; with workers > 0 they come from a process pool that is
        kept `ahead` steps in front (samples are pure functions of n, so who builds them and
        when cannot change them)."""
        idx = self.sample_indexes(step)
        if workers <= 0:
            return [self.stream[n] for n in idx]
        with self._lock:
            if self._pool is None:
                import multiprocessing
                from concurrent.futures import ProcessPoolExecutor

                # spawn, not fork: a forked child of a process that already ran OpenMP
                # threads can hang in its first parallel region
                self._pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=_worker_init, initargs=(self.stream,))
            for s in range(step, step + ahead + 1):
                for n in self.sample_indexes(s):
                    if n not in self._futures:
                        self._futures[n] = self._pool.submit(_worker_sample, n)
            futures = [self._futures.pop(n) for n in idx]
        return [f.result() for f in futures]

    def close(self) -> None:
        """Stop the sample workers (if any); a later step starts them again."""
        with self._lock:
            if self._pool is not None:
                for f in self._futures.values():
                    f.cancel()
                self._pool.shutdown(wait=True)
            self._pool, self._futures = None, {}

    def packs(self, step: int) -> list[Pack]:
        idx = self.sample_indexes(step)
        samples = self.raw_samples(step, self.workers)
        sizes = [sum(item_tokens(it, len(self.tok.encode(it.text)) if it.role == "text" else 0,
                                 self.vae_stride, self.vit_stride) for it in s.items) for s in samples]
        out = []
        for group in pack(sizes, self.max_tokens):
            items = [self._items(idx[i], samples[i]) for i in group]
            packed = build_packed(items, self.model.cfg, self.model.special_ids)
            self._add_noise(packed, [idx[i] for i in group], items)
            out.append(Pack(packed, [idx[i] for i in group], packed.length))
        return out

    def _add_noise(self, packed: PackedSequence, sample_ids: list[int], items: list[list]) -> None:
        """x_t, t and the flow target for each noisy image, from its own sample's generator."""
        rows = torch.sort(packed.mse_rows).values
        if rows.numel() == 0:
            packed.flow_target = packed.vae_tokens.new_zeros(0, packed.vae_tokens.shape[1])
            return
        image_of_row = packed.vae_image_ids[rows]
        images = torch.unique_consecutive(image_of_row)
        owners = [n for n, its in zip(sample_ids, items)
                  for it in its if getattr(it, "noisy", False) and not it.dropped]
        if len(owners) != images.numel():
            raise RuntimeError(f"{images.numel()} noisy images but {len(owners)} noisy items")
        ts, eps = [], []
        for n, img in zip(owners, images.tolist()):
            g = _generator(self.seed, n, "flow")
            count = int((image_of_row == img).sum())
            t = shift_timesteps(torch.sigmoid(torch.randn((), generator=g)), self.shift)
            ts.append(t.expand(count))
            eps.append(torch.randn(count, packed.vae_tokens.shape[1], generator=g))
        t, e = torch.cat(ts)[:, None], torch.cat(eps)
        x0 = packed.vae_tokens[rows]
        packed.vae_tokens = packed.vae_tokens.clone()
        packed.vae_tokens[rows] = (1 - t) * x0 + t * e
        packed.vae_timesteps = packed.vae_timesteps.clone().float()
        packed.vae_timesteps[rows] = t[:, 0]
        packed.mse_rows = rows
        packed.flow_target = e - x0

    @staticmethod
    def counts(packs: list[Pack]) -> torch.Tensor:
        """[CE tokens, MSE tokens, all tokens] of this rank's packs."""
        c = [sum(p.packed.ce_index.numel() for p in packs), sum(p.packed.mse_rows.numel() for p in packs),
             sum(p.tokens for p in packs)]
        return torch.tensor(c, dtype=torch.float64)

    def loss(self, model, p: Pack, global_counts: torch.Tensor, device) -> tuple[torch.Tensor, dict]:
        """Loss of one pack, normalised by the global token counts (module docstring)."""
        packed = p.packed.to(device)
        out = model(packed)
        n_ce, n_mse = float(global_counts[0]), float(global_counts[1])
        # dividing by the global count / world and letting FSDP average over ranks gives
        # every token of the global batch the same weight
        res = compute_losses(out, packed, self.ce_w, self.mse_w, num_ce=n_ce / self.world or None,
                             num_mse=n_mse / self.world or None)
        # per-rank shares of the global means: summed over ranks they give the means
        return res.total, {"ce": float(res.ce.detach()) / self.world,
                           "mse": float(res.mse.detach()) / self.world}
