"""Inference state: a per-layer KV cache plus the next RoPE id, with an explicit fork()."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .layers import attention


@dataclass
class KVCache:
    """keys[i], values[i]: (T, Hkv, d) for layer i; rotary already applied to keys.

    Tensors are replaced, never written in place, so forks can share them safely.
    """

    keys: list[torch.Tensor | None] = field(default_factory=list)
    values: list[torch.Tensor | None] = field(default_factory=list)

    @property
    def length(self) -> int:
        return 0 if not self.keys or self.keys[0] is None else self.keys[0].shape[0]


@dataclass
class InferenceContext:
    """One conversation's cache and its next RoPE id (bagel-facts §3, inference rule)."""

    cache: KVCache = field(default_factory=KVCache)
    rope: int = 0

    def fork(self) -> "InferenceContext":
        c = KVCache(list(self.cache.keys), list(self.cache.values))
        return InferenceContext(cache=c, rope=self.rope)

    @property
    def length(self) -> int:
        return self.cache.length


class CachedAttention:
    """attend() for one call against a cache: the new block sees the whole cache plus
    itself (causal inside the block for text, bidirectional for image blocks), and is
    appended to the cache only when `write` is set (noisy latents never are)."""

    def __init__(self, cache: KVCache, num_layers: int, causal: bool, write: bool, backend: str = "sdpa"):
        if not cache.keys:
            cache.keys[:] = [None] * num_layers
            cache.values[:] = [None] * num_layers
        self.cache, self.causal, self.write, self.backend = cache, causal, write, backend
        self._mask: torch.Tensor | None = None

    def _mask_for(self, lq: int, past: int, device) -> torch.Tensor | None:
        if not self.causal or lq == 1:
            return None
        if self._mask is None:
            # query j sees every cached key and new keys 0..j
            self._mask = torch.ones(lq, past + lq, dtype=torch.bool, device=device).tril(diagonal=past)
        return self._mask

    def __call__(self, i: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        pk, pv = self.cache.keys[i], self.cache.values[i]
        kk = k if pk is None else torch.cat([pk, k])
        vv = v if pv is None else torch.cat([pv, v])
        if self.write:
            self.cache.keys[i], self.cache.values[i] = kk, vv
        past = 0 if pk is None else pk.shape[0]
        return attention(q, kk, vv, self._mask_for(q.shape[0], past, q.device), self.backend)
