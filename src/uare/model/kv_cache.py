"""Inference state: a per-layer KV cache plus the next RoPE id, with an explicit fork().

A context may hold a batch of B conversations of equal length (the tiles of one image,
all given the same instruction): every cached tensor is (B, T, Hkv, d), and every block
appended to it is B blocks of equal length, one per conversation. A context of batch 1
serves any batch (a shared prefix, such as the text-only CFG context), by broadcasting.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch

from .layers import attention


@dataclass
class KVCache:
    """keys[i], values[i]: (B, T, Hkv, d) for layer i; rotary already applied to keys.

    Tensors are replaced, never written in place, so forks can share them safely.
    """

    keys: list[torch.Tensor | None] = field(default_factory=list)
    values: list[torch.Tensor | None] = field(default_factory=list)

    @property
    def length(self) -> int:
        return 0 if not self.keys or self.keys[0] is None else self.keys[0].shape[1]

    @property
    def batch(self) -> Optional[int]:
        """Conversations held (None while empty: an empty cache takes any batch)."""
        return None if not self.keys or self.keys[0] is None else self.keys[0].shape[0]


@dataclass
class InferenceContext:
    """One conversation's (or a batch's) cache and its next RoPE id (bagel-facts §3, inference rule)."""

    cache: KVCache = field(default_factory=KVCache)
    rope: int = 0

    def fork(self) -> "InferenceContext":
        c = KVCache(list(self.cache.keys), list(self.cache.values))
        return InferenceContext(cache=c, rope=self.rope)

    @property
    def length(self) -> int:
        return self.cache.length

    @property
    def batch(self) -> Optional[int]:
        return self.cache.batch


class CachedAttention:
    """attend() for one call against a cache: each of the `batch` new blocks sees its own
    conversation's cache plus itself (causal inside the block for text, bidirectional for
    image blocks), and is appended to the cache only when `write` is set (noisy latents
    never are).

    q/k/v arrive flattened, (batch * L, H, d); `order` (perm, inv) says how the caller
    permuted the tokens (MoT routing puts every und token first), and is undone here so
    that each block's tokens are contiguous. None: already in block order.
    """

    def __init__(self, cache: KVCache, num_layers: int, causal: bool, write: bool, backend: str = "sdpa",
                 batch: int = 1, order: Optional[tuple[torch.Tensor, torch.Tensor]] = None):
        if not cache.keys:
            cache.keys[:] = [None] * num_layers
            cache.values[:] = [None] * num_layers
        held = cache.batch
        if held not in (None, 1, batch):
            raise ValueError(f"a context of {held} conversations cannot take a batch of {batch} blocks")
        self.cache, self.causal, self.write, self.backend = cache, causal, write, backend
        self.batch, self.order = batch, order
        self._mask: torch.Tensor | None = None

    def _mask_for(self, lq: int, past: int, device) -> torch.Tensor | None:
        if not self.causal or lq == 1:
            return None
        if self._mask is None:
            # query j sees every cached key and new keys 0..j
            self._mask = torch.ones(lq, past + lq, dtype=torch.bool, device=device).tril(diagonal=past)
        return self._mask

    def _blocks(self, x: torch.Tensor) -> torch.Tensor:
        if self.order is not None:
            x = x[self.order[1]]
        return x.view(self.batch, -1, *x.shape[1:])

    def __call__(self, i: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        q, k, v = self._blocks(q), self._blocks(k), self._blocks(v)
        pk, pv = self.cache.keys[i], self.cache.values[i]
        if pk is not None and pk.shape[0] != self.batch:   # a shared prefix: one for all
            pk, pv = pk.expand(self.batch, *pk.shape[1:]), pv.expand(self.batch, *pv.shape[1:])
        kk = k if pk is None else torch.cat([pk, k], dim=1)
        vv = v if pv is None else torch.cat([pv, v], dim=1)
        if self.write:
            self.cache.keys[i], self.cache.values[i] = kk, vv
        past = 0 if pk is None else pk.shape[1]
        out = attention(q, kk, vv, self._mask_for(q.shape[1], past, q.device), self.backend)
        out = out.reshape(-1, *out.shape[2:])
        return out if self.order is None else out[self.order[0]]
