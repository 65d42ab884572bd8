"""UAREModel: the MoT LLM with its ViT, connector, latent adapters and heads.

Training: `model(packed)` over a PackedSequence. Inference: prefill/decode/velocity calls
against an InferenceContext. Both run the same routed MoT layers (mot.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .autoencoder import Autoencoder
from .config import ANCHOR_T_MIN, ModelConfig
from .embeddings import PositionEmbedding, TimestepEmbedder
from .kv_cache import CachedAttention, InferenceContext
from .layers import segment_attention
from .mot import MoTDecoder
from .patches import latent_pos_ids, latents_to_tokens
from .vit import ViT, patchify

if TYPE_CHECKING:
    from ..sequence import PackedSequence, SpecialIds


@dataclass
class ModelOutput:
    logits: torch.Tensor     # (Nce, V) at packed.ce_index
    velocity: torch.Tensor   # (Nmse, token_dim) at packed.mse_rows
    x0: Optional[torch.Tensor] = None  # (Nmse, token_dim) predicted clean latents (flow_anchor "condition")


def anchored_velocity(x_t: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """The velocity eps - x0 implied by x0 at x_t = (1 - t) x0 + t eps: (x_t - x0) / t."""
    return (x_t - x0) / t.clamp_min(ANCHOR_T_MIN)


class Connector(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(cin, cout), nn.Linear(cout, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class UAREModel(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.llm.hidden_size
        self.llm = MoTDecoder(cfg.llm)
        self.vit = ViT(cfg.vit)
        self.connector = Connector(cfg.vit.hidden_size, d)
        self.vit_pos_embed = PositionEmbedding(cfg.vit.max_patches_per_side, d)
        self.latent_pos_embed = PositionEmbedding(cfg.max_latent_size, d)
        self.time_embedder = TimestepEmbedder(d)
        self.vae2llm = nn.Linear(cfg.latent_token_dim, d)
        self.llm2vae = nn.Linear(d, cfg.latent_token_dim)
        if cfg.flow_anchor == "condition":
            # each noisy token also gets its own condition token added to its input (the
            # concatenation conditioning of SR3-style restoration models), so a local
            # correction needs no learned position-matching attention first
            self.anchor2llm = nn.Linear(cfg.latent_token_dim, d)
        # kept outside the registered modules: Bagel ships it apart (ae.safetensors), so
        # state_dict() holds exactly the LLM-side keys; _apply below still moves it
        object.__setattr__(self, "autoencoder", Autoencoder(cfg.vae).requires_grad_(False).eval())
        object.__setattr__(self, "tokenizer", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Normal(0.02) linears/embeddings, zero biases, zero llm2vae, gen expert = und."""
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
        nn.init.zeros_(self.llm2vae.weight)
        nn.init.zeros_(self.llm2vae.bias)
        if self.llm.embed_tokens.weight.device.type != "meta":
            self.llm.copy_und_to_gen()

    # ---- folders and tokenizer ---------------------------------------------------
    def save_pretrained(self, folder) -> "Path":
        """config.json, model.safetensors, ae.safetensors and (if set) tokenizer.json."""
        from .folder import save_pretrained

        return save_pretrained(self, folder)

    @classmethod
    def from_pretrained(cls, folder, device="cpu", dtype=None) -> "UAREModel":
        """Our folder layout or a BAGEL-7B-MoT-layout folder (see model/folder.py)."""
        from .folder import from_pretrained

        return from_pretrained(folder, device, dtype)

    def set_tokenizer(self, tokenizer) -> None:
        """Attach a tokenizer whose special ids and size fit this model's config."""
        c = self.cfg.llm
        got = (tokenizer.bos_id, tokenizer.eos_id, tokenizer.vision_start_id, tokenizer.vision_end_id)
        want = (c.bos_id, c.eos_id, c.vision_start_id, c.vision_end_id)
        if got != want:
            raise ValueError(f"tokenizer special ids {got} differ from the model config's {want}")
        if tokenizer.vocab_size > c.vocab_size:
            raise ValueError(f"tokenizer has {tokenizer.vocab_size} tokens, the model only {c.vocab_size}")
        object.__setattr__(self, "tokenizer", tokenizer)

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        self.autoencoder._apply(fn, recurse)
        return self

    @property
    def special_ids(self) -> "SpecialIds":
        from ..sequence import SpecialIds

        c = self.cfg.llm
        return SpecialIds(c.bos_id, c.eos_id, c.vision_start_id, c.vision_end_id)

    @property
    def attention_backend(self) -> str:
        # measured on this CPU: dense-mask SDPA beats flex_attention (bench/model.py)
        return "sdpa" if self.cfg.attention == "auto" else self.cfg.attention

    # ---- token embeddings -------------------------------------------------------
    def embed_vit(self, patches: torch.Tensor, pos_ids: torch.Tensor, seqlens: list[int]) -> torch.Tensor:
        """(N, p*p*3) patches -> (N, D) LLM inputs."""
        return self.connector(self.vit(patches, pos_ids, seqlens)) + self.vit_pos_embed(pos_ids)

    def embed_latents(self, tokens: torch.Tensor, t: torch.Tensor, pos_ids: torch.Tensor) -> torch.Tensor:
        """(N, token_dim) latent tokens at times t (N,) -> (N, D) LLM inputs."""
        return self.vae2llm(tokens) + self.time_embedder(t) + self.latent_pos_embed(pos_ids)

    def embed(self, packed: "PackedSequence") -> torch.Tensor:
        """(L, D) input embeddings of a packed sequence."""
        w = self.llm.embed_tokens.weight
        h = torch.zeros(packed.length, w.shape[1], device=w.device, dtype=w.dtype)
        h = h.index_copy(0, packed.text_index, self.llm.embed_tokens(packed.input_ids[packed.text_index]))
        if packed.vit_index.numel():
            vit = self.embed_vit(packed.vit_patches.to(w.dtype), packed.vit_pos_ids, packed.vit_seqlens)
            h = h.index_copy(0, packed.vit_index, vit)
        if packed.vae_index.numel():
            lat = self.embed_latents(packed.vae_tokens.to(w.dtype), packed.vae_timesteps, packed.vae_pos_ids)
            if self.cfg.flow_anchor == "condition" and packed.mse_rows.numel():
                rows = packed.mse_rows
                lat = lat.index_add(0, rows, self.anchor2llm(self._anchor_of(packed)[rows].to(w.dtype)))
            h = h.index_copy(0, packed.vae_index, lat)
        return h

    @staticmethod
    def _anchor_of(packed: "PackedSequence") -> torch.Tensor:
        if packed.vae_anchor is None:
            raise ValueError("flow_anchor 'condition' needs packed.vae_anchor (build the pack with sequence.build_packed)")
        return packed.vae_anchor

    # ---- training forward ------------------------------------------------------
    def forward(self, packed: "PackedSequence") -> ModelOutput:
        """Logits at packed.ce_index and velocities at packed.mse_rows."""
        perm, n_und = _routing(packed.gen_mask)
        inv = torch.argsort(perm)
        segments = packed.attention_segments()
        backend = self.attention_backend
        identity = bool(torch.equal(perm, inv))

        def attend(i, q, k, v):
            # layers work in expert-major order; attention runs per sample in packed order
            if identity:
                return segment_attention(q, k, v, segments, backend)
            return segment_attention(q[inv], k[inv], v[inv], segments, backend)[perm]

        hu, hg = self.llm(self.embed(packed)[perm], n_und, packed.position_ids[perm], attend)
        logits = self.llm.lm_head(hu[inv[packed.ce_index]])
        head = self.llm2vae(hg[inv[packed.vae_index[packed.mse_rows]] - n_und])
        if self.cfg.flow_anchor == "velocity":
            return ModelOutput(logits=logits, velocity=head)
        rows = packed.mse_rows
        x0 = self._anchor_of(packed)[rows].to(head) + head
        t = packed.vae_timesteps[rows].to(head)[:, None]
        return ModelOutput(logits=logits, velocity=anchored_velocity(packed.vae_tokens[rows].to(head), t, x0), x0=x0)

    # ---- inference against a KV cache -----------------------------------------
    def new_context(self) -> InferenceContext:
        return InferenceContext()

    def _run_block(self, ctx: InferenceContext, h: torch.Tensor, gen_mask: torch.Tensor,
                   positions: torch.Tensor, causal: bool, write: bool, batch: int = 1):
        """Run `batch` equal blocks (flattened, block after block) against ctx; returns the
        normed und and gen hidden states, each in block order."""
        perm, n_und = _routing(gen_mask)
        in_order = not bool(gen_mask[:n_und].any())   # und tokens already first: no permutation
        order = None if in_order else (perm, torch.argsort(perm))
        attend = CachedAttention(ctx.cache, self.cfg.llm.num_layers, causal, write, self.attention_backend,
                                 batch=batch, order=order)
        hu, hg = self.llm(h if in_order else h[perm], n_und, positions if in_order else positions[perm], attend)
        return hu, hg

    def _marker_block(self, inner: torch.Tensor, gen: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """<|vision_start|> inner <|vision_end|> embeddings and the gen mask of the block;
        inner (n, D), or (B, n, D) for B blocks (returned flattened, block after block)."""
        c = self.cfg.llm
        inner = inner if inner.dim() == 3 else inner[None]
        b = inner.shape[0]
        ids = torch.tensor([c.vision_start_id, c.vision_end_id], device=inner.device)
        marks = self.llm.embed_tokens(ids).to(inner.dtype)[None].expand(b, 2, -1)
        h = torch.cat([marks[:, :1], inner, marks[:, 1:]], dim=1)
        gen_mask = torch.zeros(h.shape[1], dtype=torch.bool, device=h.device)
        gen_mask[1:-1] = gen
        return h.reshape(-1, h.shape[-1]), gen_mask.repeat(b)

    @staticmethod
    def _batch_of(ctx: InferenceContext) -> int:
        return ctx.batch or 1

    def _append_text(self, ctx: InferenceContext, ids: list[int]) -> torch.Tensor:
        """Run ids (causal, und) in every conversation of ctx; rope advances by the length.
        Returns the und hidden states, (B, len(ids), D)."""
        b = self._batch_of(ctx)
        tok = torch.tensor(ids, device=self.llm.embed_tokens.weight.device)
        pos = torch.arange(ctx.rope, ctx.rope + len(ids), device=tok.device)
        hu, _ = self._run_block(ctx, self.llm.embed_tokens(tok.repeat(b)), torch.zeros(b * len(ids), dtype=torch.bool,
                                device=tok.device), pos.repeat(b), True, True, batch=b)
        ctx.rope += len(ids)
        return hu.view(b, len(ids), -1)

    @torch.no_grad()
    def prefill_text(self, ctx: InferenceContext, ids: list[int]) -> None:
        """Append <|im_start|> ids <|im_end|> (causal, und) to every conversation of ctx;
        rope advances by the length."""
        self._append_text(ctx, [self.cfg.llm.bos_id, *ids, self.cfg.llm.eos_id])

    @torch.no_grad()
    def extend_text(self, ctx: InferenceContext, ids: list[int]) -> torch.Tensor:
        """Append ids to every conversation of ctx, leaving the text segment open
        (decode_step for several tokens and conversations at once); returns the (B, V)
        logits for each conversation's next token."""
        return self.llm.lm_head(self._append_text(ctx, ids)[:, -1])

    @torch.no_grad()
    def decode_step(self, ctx: InferenceContext, token_id: int) -> torch.Tensor:
        """Append one text token; returns the (V,) logits for the next token."""
        if self._batch_of(ctx) != 1:
            raise ValueError(f"decode_step generates for one conversation; this context holds {ctx.batch}")
        return self.extend_text(ctx, [token_id])[0]

    @torch.no_grad()
    def prefill_vit_image(self, ctx: InferenceContext, pixels: torch.Tensor) -> None:
        """(3, H, W) in [-1, 1], or (B, 3, H, W) for a batch, as one bidirectional und
        block per conversation at one rope id."""
        v = self.cfg.vit
        w = self.llm.embed_tokens.weight
        images = pixels[None] if pixels.dim() == 3 else pixels
        patches, pos = zip(*(patchify(x.to(w), v) for x in images))
        n = patches[0].shape[0]
        inner = self.embed_vit(torch.cat(patches), torch.cat(pos).to(w.device), [n] * len(images))
        h, gen_mask = self._marker_block(inner.view(len(images), n, -1), gen=False)
        self._run_block(ctx, h, gen_mask, torch.full_like(gen_mask, ctx.rope, dtype=torch.long), False, True,
                        batch=len(images))
        ctx.rope += 1

    def _latent_block(self, ctx, tokens: torch.Tensor, t: float, grid: tuple[int, int],
                      anchor: Optional[torch.Tensor] = None):
        """Embedded marker blocks of latent tokens (L, token_dim) or (B, L, token_dim)."""
        w = self.llm.embed_tokens.weight
        tokens = tokens if tokens.dim() == 3 else tokens[None]
        b, n = tokens.shape[:2]
        pos = latent_pos_ids(grid[0], grid[1], self.cfg.max_latent_size).to(w.device).repeat(b)
        tt = torch.full((b * n,), float(t), device=w.device)
        inner = self.embed_latents(tokens.reshape(b * n, -1).to(w), tt, pos)
        if anchor is not None:
            inner = inner + self.anchor2llm(anchor.reshape(b * n, -1).to(w))
        h, gen_mask = self._marker_block(inner.view(b, n, -1), gen=True)
        return h, gen_mask, torch.full_like(gen_mask, ctx.rope, dtype=torch.long), b

    @torch.no_grad()
    def prefill_vae_image(self, ctx: InferenceContext, latent: torch.Tensor) -> None:
        """(z, p*h, p*w) clean scaled latents, or (B, z, p*h, p*w), as a gen block with
        t = 0 per conversation; rope advances by 1."""
        p = self.cfg.latent_patch_size
        tokens = latents_to_tokens(latent, p)
        grid = (latent.shape[-2] // p, latent.shape[-1] // p)
        h, gen_mask, pos, b = self._latent_block(ctx, tokens, 0.0, grid)
        self._run_block(ctx, h, gen_mask, pos, False, True, batch=b)
        ctx.rope += 1

    @torch.no_grad()
    def velocity(self, ctx: InferenceContext, x_t: torch.Tensor, t: float, grid: tuple[int, int],
                 anchor: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(h*w, token_dim) noisy tokens at time t, or (B, h*w, token_dim) for a context of
        B conversations -> predicted eps - x0, same shape; cache untouched.

        anchor: the conditioning image's latent tokens, x_t's shape, required when the
        config's flow_anchor is "condition" (ignored otherwise).
        """
        if x_t.shape[-2] != grid[0] * grid[1]:
            raise ValueError(f"velocity: {x_t.shape[-2]} tokens do not fill a {grid[0]}x{grid[1]} grid")
        anchored = self.cfg.flow_anchor == "condition"
        if anchored and (anchor is None or anchor.shape != x_t.shape):
            raise ValueError(f"flow_anchor 'condition' needs the conditioning latent tokens of shape "
                             f"{tuple(x_t.shape)} as `anchor`")
        h, gen_mask, pos, b = self._latent_block(ctx, x_t, t, grid, anchor if anchored else None)
        _, hg = self._run_block(ctx, h, gen_mask, pos, False, False, batch=b)
        head = self.llm2vae(hg).view(x_t.shape)
        if not anchored:
            return head.to(x_t.dtype)
        x0 = anchor.to(head) + head
        return anchored_velocity(x_t.to(head), torch.tensor(float(t), device=head.device), x0).to(x_t.dtype)


def _routing(gen_mask: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Permutation putting und tokens first (stable), and the und count."""
    und = torch.nonzero(~gen_mask).flatten()
    gen = torch.nonzero(gen_mask).flatten()
    return torch.cat([und, gen]), und.shape[0]
