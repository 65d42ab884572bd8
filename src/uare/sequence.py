"""One sequence builder for training and inference: items -> PackedSequence.

A sample is an ordered list of items. Layout, experts, RoPE ids and the attention rule
follow bagel-facts §1/§3/§4:
- Text: <|im_start|> ids <|im_end|>, causal, und expert; with loss, position i predicts i+1.
- ViT image: <|vision_start|> patches <|vision_end|>, one block, und expert.
- VAE image: markers (und) around latent tokens (gen); clean blocks are context (t = 0),
  noisy blocks carry the flow loss and no later token may see them.
- All tokens of an image block share one RoPE id. Training rule: text advances by its
  length, ViT and clean VAE by 1, noisy VAE by 0; a dropped image still advances by 1.
Several samples pack into one sequence that never attend across samples.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Optional, Sequence, Union

import torch

from .model.config import ModelConfig
from .model.patches import ImageSizeError, latent_pos_ids, latents_to_tokens, tokens_to_latents  # noqa: F401
from .model.vit import patchify

CAUSAL, FULL, NOISE = 0, 1, 2


@dataclass(frozen=True)
class SpecialIds:
    bos: int
    eos: int
    vision_start: int
    vision_end: int


@dataclass(frozen=True)
class Text:
    ids: Sequence[int]
    loss: bool = False
    dropped: bool = False
    loss_len: Optional[int] = None   # with loss: only the first loss_len ids are targets


@dataclass(frozen=True)
class VitImage:
    pixels: torch.Tensor          # (3, H, W) in [-1, 1], sides multiples of the ViT patch
    dropped: bool = False


@dataclass(frozen=True)
class VaeImage:
    latent: torch.Tensor          # (z, p*h, p*w) scaled autoencoder latents (x0)
    noisy: bool = False           # True: a generation target with the flow loss
    dropped: bool = False


Item = Union[Text, VitImage, VaeImage]


def drop(item: Item) -> Item:
    """The item removed for classifier-free-guidance dropout (it keeps its RoPE effect)."""
    return replace(item, dropped=True)


@dataclass
class PackedSequence:
    """L packed tokens. Index tensors are positions in the pack (long)."""

    input_ids: torch.Tensor        # (L,) text and marker ids, 0 at image tokens
    position_ids: torch.Tensor     # (L,) RoPE ids
    gen_mask: torch.Tensor         # (L,) bool: token goes to the gen expert
    sample_ids: torch.Tensor       # (L,)
    split_ids: torch.Tensor        # (L,) block id, unique across the pack
    split_full: torch.Tensor       # (L,) bool: token's block is bidirectional (full or noise)
    split_noise: torch.Tensor      # (L,) bool: token's block is a noisy VAE image
    text_index: torch.Tensor       # (Nt,)
    vit_index: torch.Tensor        # (Nv,)
    vit_patches: torch.Tensor      # (Nv, patch*patch*3)
    vit_pos_ids: torch.Tensor      # (Nv,)
    vit_seqlens: list[int]
    vae_index: torch.Tensor        # (Nz,)
    vae_tokens: torch.Tensor       # (Nz, token_dim): x0, or x_t after losses.add_flow_noise
    vae_pos_ids: torch.Tensor      # (Nz,)
    vae_image_ids: torch.Tensor    # (Nz,) which VAE image, 0..n_images-1
    vae_noisy: torch.Tensor        # (Nz,) bool
    vae_timesteps: torch.Tensor    # (Nz,) t per token, 0 for clean latents
    vae_grids: list[tuple[int, int]]  # (h, w) tokens per VAE image
    ce_index: torch.Tensor         # (Nce,) positions whose logits are supervised
    ce_labels: torch.Tensor        # (Nce,) next-token targets
    mse_rows: torch.Tensor         # (Nmse,) rows of vae_tokens with the flow loss
    flow_target: torch.Tensor | None = None  # (Nmse, token_dim) eps - x0
    # (Nz, token_dim): for each noisy image's tokens, its sample's latest clean VAE image of
    # the same grid (kept even when CFG dropout removed that image from the sequence), zeros
    # elsewhere; what a flow_anchor="condition" head predicts a correction to
    vae_anchor: torch.Tensor | None = None

    @property
    def length(self) -> int:
        return self.input_ids.shape[0]

    def attention_mask(self) -> torch.Tensor:
        """(L, L) bool, True where query row may attend to key column."""
        return _rule(self.sample_ids, self.split_ids, self.split_full, self.split_noise)

    def attention_segments(self, perm: torch.Tensor | None = None) -> list[tuple[int, int, "torch.Tensor | str"]]:
        """Per-sample (start, end, mask) blocks of attention_mask(); "causal" for text-only samples."""
        counts = torch.bincount(self.sample_ids).tolist()
        out, a = [], 0
        for n in counts:
            b = a + n
            if not self.split_full[a:b].any():
                out.append((a, b, "causal"))
            else:
                out.append((a, b, _rule(self.sample_ids[a:b], self.split_ids[a:b], self.split_full[a:b], self.split_noise[a:b])))
            a = b
        return out

    def to(self, device) -> "PackedSequence":
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        for k, v in moved.items():
            if isinstance(v, torch.Tensor):
                moved[k] = v.to(device)
        return PackedSequence(**moved)


def _rule(s: torch.Tensor, b: torch.Tensor, full: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """q may see k iff same sample, (k <= q or same full/noise block), k not in another noise block."""
    L = s.shape[0]
    same_split = b[:, None] == b[None, :]
    earlier = torch.ones(L, L, dtype=torch.bool, device=s.device).tril()
    allowed = (s[:, None] == s[None, :]) & (earlier | (same_split & full[:, None]))
    return allowed & ~(noise[None, :] & ~same_split)


class _Builder:
    """Accumulates python lists token by token block; turned into tensors once at the end."""

    def __init__(self, cfg: ModelConfig, special: SpecialIds):
        self.cfg, self.sp = cfg, special
        self.ids: list[int] = []
        self.pos: list[int] = []
        self.gen: list[bool] = []
        self.sample: list[int] = []
        self.split: list[int] = []
        self.kind: list[int] = []
        self.text_index: list[int] = []
        self.vit_index: list[int] = []
        self.vit_patches: list[torch.Tensor] = []
        self.vit_pos: list[torch.Tensor] = []
        self.vit_seqlens: list[int] = []
        self.vae_index: list[int] = []
        self.vae_tokens: list[torch.Tensor] = []
        self.vae_pos: list[torch.Tensor] = []
        self.vae_image: list[int] = []
        self.vae_noisy: list[bool] = []
        self.vae_grids: list[tuple[int, int]] = []
        self.vae_anchor: list[torch.Tensor] = []
        self.last_clean: dict[tuple[int, int], torch.Tensor] = {}
        self.ce_index: list[int] = []
        self.ce_labels: list[int] = []
        self.n_split = 0
        self.sample_id = 0
        self.rope = 0

    def _tokens(self, ids: list[int], gen: bool, kind: int, rope: list[int] | int, n: int | None = None) -> int:
        """Append n tokens of one block; returns the index of the first."""
        n = len(ids) if n is None else n
        start = len(self.ids)
        self.ids += ids if ids else [0] * n
        self.pos += rope if isinstance(rope, list) else [rope] * n
        self.gen += [gen] * n
        self.sample += [self.sample_id] * n
        self.split += [self.n_split] * n
        self.kind += [kind] * n
        return start

    def text(self, item: Text) -> None:
        if item.dropped:
            return
        ids = [self.sp.bos, *item.ids, self.sp.eos]
        start = self._tokens(ids, False, CAUSAL, list(range(self.rope, self.rope + len(ids))))
        self.text_index += range(start, start + len(ids))
        if item.loss:
            # targets ids[1:] (answer and eos), or ids[1 : 1 + loss_len] (its opening)
            n = len(ids) - 1 if item.loss_len is None else min(item.loss_len, len(ids) - 1)
            self.ce_index += range(start, start + n)
            self.ce_labels += ids[1:1 + n]
        self.rope += len(ids)
        self.n_split += 1

    def _marker(self, token: int, kind: int) -> None:
        self.text_index.append(self._tokens([token], False, kind, self.rope))

    def vit(self, item: VitImage) -> None:
        if not item.dropped:
            v = self.cfg.vit
            patches, pos = patchify(item.pixels, v)
            self._marker(self.sp.vision_start, FULL)
            start = self._tokens([], False, FULL, self.rope, n=patches.shape[0])
            self._marker(self.sp.vision_end, FULL)
            self.vit_index += range(start, start + patches.shape[0])
            self.vit_patches.append(patches)
            self.vit_pos.append(pos)
            self.vit_seqlens.append(patches.shape[0])
            self.n_split += 1
        self.rope += 1

    def vae(self, item: VaeImage) -> None:
        p = self.cfg.latent_patch_size
        h, w = item.latent.shape[1] // p, item.latent.shape[2] // p
        if not item.noisy:
            self.last_clean[(h, w)] = item.latent
        if item.dropped:
            self.rope += 1
            return
        tokens = latents_to_tokens(item.latent, p)
        anchor = self.last_clean.get((h, w)) if item.noisy else None
        self.vae_anchor.append(torch.zeros_like(tokens) if anchor is None else latents_to_tokens(anchor, p))
        kind = NOISE if item.noisy else FULL
        self._marker(self.sp.vision_start, kind)
        start = self._tokens([], True, kind, self.rope, n=tokens.shape[0])
        self._marker(self.sp.vision_end, kind)
        self.vae_index += range(start, start + tokens.shape[0])
        self.vae_tokens.append(tokens)
        self.vae_pos.append(latent_pos_ids(h, w, self.cfg.max_latent_size))
        self.vae_image += [len(self.vae_grids)] * tokens.shape[0]
        self.vae_noisy += [item.noisy] * tokens.shape[0]
        self.vae_grids.append((h, w))
        self.n_split += 1
        self.rope += 0 if item.noisy else 1

    def add_sample(self, items: Sequence[Item]) -> None:
        self.rope = 0
        self.last_clean = {}
        for item in items:
            if isinstance(item, Text):
                self.text(item)
            elif isinstance(item, VitImage):
                self.vit(item)
            elif isinstance(item, VaeImage):
                self.vae(item)
            else:
                raise TypeError(f"unknown sequence item {type(item).__name__}")
        self.sample_id += 1

    def finish(self) -> PackedSequence:
        long = lambda x: torch.tensor(x, dtype=torch.long)  # noqa: E731
        kind = long(self.kind)
        vit_dim = self.cfg.vit.patch_size ** 2 * 3
        noisy = torch.tensor(self.vae_noisy, dtype=torch.bool)
        return PackedSequence(
            input_ids=long(self.ids), position_ids=long(self.pos),
            gen_mask=torch.tensor(self.gen, dtype=torch.bool), sample_ids=long(self.sample),
            split_ids=long(self.split), split_full=kind != CAUSAL, split_noise=kind == NOISE,
            text_index=long(self.text_index), vit_index=long(self.vit_index),
            vit_patches=torch.cat(self.vit_patches) if self.vit_patches else torch.zeros(0, vit_dim),
            vit_pos_ids=torch.cat(self.vit_pos) if self.vit_pos else long([]),
            vit_seqlens=self.vit_seqlens, vae_index=long(self.vae_index),
            vae_tokens=torch.cat(self.vae_tokens) if self.vae_tokens else torch.zeros(0, self.cfg.latent_token_dim),
            vae_pos_ids=torch.cat(self.vae_pos) if self.vae_pos else long([]),
            vae_image_ids=long(self.vae_image), vae_noisy=noisy,
            vae_timesteps=torch.zeros(noisy.shape[0]), vae_grids=self.vae_grids,
            ce_index=long(self.ce_index), ce_labels=long(self.ce_labels),
            mse_rows=torch.nonzero(noisy).flatten(),
            vae_anchor=torch.cat(self.vae_anchor) if self.vae_anchor else torch.zeros(0, self.cfg.latent_token_dim),
        )


def build_packed(samples: Sequence[Sequence[Item]], cfg: ModelConfig, special: SpecialIds) -> PackedSequence:
    """Pack samples (each an ordered list of items) into one sequence; see the module doc."""
    b = _Builder(cfg, special)
    for items in samples:
        b.add_sample(items)
    if not b.ids:
        raise ValueError("nothing to pack: every item was dropped or the sample list is empty")
    return b.finish()
