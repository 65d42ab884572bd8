"""From raw samples to model items: CFG dropout, token counting, packing to a budget.

CFG dropout (paper §4.1, bagel-facts §4): each droppable item is dropped whole, markers
included, with its own probability: text, ViT and clean-VAE items 0.1 each. The noisy
target and supervised answers are never dropped; VLM (IQA) data has no droppable item.
A dropped image still advances the RoPE id (the sequence builder does that).

Packing: samples go, in order, into packs of at most `max_tokens` tokens; a sample larger
than the budget gets a pack of its own rather than being lost silently.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
from PIL import Image

from ..sequence import Text, VaeImage, VitImage, drop
from .dataset import RawItem, RawSample


@dataclass(frozen=True)
class DropoutConfig:
    text: float = 0.1
    vit: float = 0.1
    vae: float = 0.1


def dropout_mask(items: Sequence[RawItem], p: DropoutConfig, rng: random.Random) -> list[bool]:
    """True where an item is dropped; one draw per item so masks are reproducible."""
    prob = {"text": p.text, "vit": p.vit, "vae": p.vae}
    return [bool(it.cfg and not it.loss and rng.random() < prob[it.role]) for it in items]


def item_tokens(item: RawItem, n_text: int, vae_stride: int, vit_stride: int) -> int:
    """Tokens an item takes in the pack, markers included."""
    if item.role == "text":
        return n_text + 2
    w, h = item.image.size
    s = vae_stride if item.role == "vae" else vit_stride
    return (w // s) * (h // s) + 2


def pixels(image: Image.Image) -> torch.Tensor:
    """(3, H, W) float32 in [-1, 1]."""
    import numpy as np

    a = torch.from_numpy(np.asarray(image, dtype=np.float32).copy()).permute(2, 0, 1)
    return a / 127.5 - 1.0


def to_items(sample: RawSample, encode_text: Callable[[str], list[int]],
             encode_latent: Callable[[torch.Tensor], torch.Tensor],
             dropped: Sequence[bool]) -> list:
    """Sequence items of a sample; `encode_latent` maps (3,H,W) pixels to latents."""
    out = []
    for it, d in zip(sample.items, dropped):
        if it.role == "text":
            ids = encode_text(it.text)
            item = Text(ids, loss=it.loss, loss_len=_prefix_len(it, ids, encode_text))
        elif it.role == "vit":
            item = VitImage(pixels(it.image))
        else:
            item = VaeImage(encode_latent(pixels(it.image)), noisy=it.loss)
        out.append(drop(item) if d else item)
    return out


def _prefix_len(item: RawItem, ids: list[int], encode_text: Callable[[str], list[int]]) -> Optional[int]:
    """Tokens of `item.loss_prefix`, which must tokenize as the opening of the text's
    `ids` (it does at a word boundary with a byte-level BPE); None: the whole text."""
    if not (item.loss and item.loss_prefix):
        return None
    head = encode_text(item.loss_prefix)
    if ids[:len(head)] != head:
        raise ValueError(f"loss prefix {item.loss_prefix!r} does not tokenize as the opening of {item.text!r}")
    return len(head)


def pack(sizes: Sequence[int], max_tokens: int) -> list[list[int]]:
    """Greedy in-order packing: indexes of samples per pack, each pack <= max_tokens
    unless one sample alone exceeds it."""
    packs: list[list[int]] = []
    used = 0
    for i, n in enumerate(sizes):
        if packs and used + n <= max_tokens:
            packs[-1].append(i)
            used += n
        else:
            packs.append([i])
            used = n
    return packs
