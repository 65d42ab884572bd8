"""Training losses: next-token cross-entropy and rectified flow (bagel-facts §4).

Flow convention: x_t = (1 - t) x0 + t eps, the model predicts v = eps - x0; t = 0 is data.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from .sequence import PackedSequence


def shift_timesteps(t: torch.Tensor, shift: float) -> torch.Tensor:
    """s t / (1 + (s - 1) t): shift > 1 moves mass towards t = 1 (more noise)."""
    return shift * t / (1 + (shift - 1) * t)


def sample_timesteps(n: int, shift: float, generator: torch.Generator | None = None,
                     device: torch.device | str = "cpu") -> torch.Tensor:
    """(n,) logit-normal t = sigmoid(N(0, 1)), then shifted."""
    tau = torch.randn(n, generator=generator, device=device)
    return shift_timesteps(torch.sigmoid(tau), shift)


def add_flow_noise(packed: PackedSequence, shift: float, generator: torch.Generator | None = None) -> PackedSequence:
    """A copy whose noisy latent tokens are x_t, with t per noisy image and flow_target = eps - x0.

    Clean conditioning latents keep t = 0 and stay x0.
    """
    x0 = packed.vae_tokens
    n_images = len(packed.vae_grids)
    t_img = sample_timesteps(n_images, shift, generator, x0.device)
    noisy = packed.vae_noisy
    t = torch.where(noisy, t_img[packed.vae_image_ids] if n_images else torch.zeros_like(packed.vae_timesteps),
                    torch.zeros_like(packed.vae_timesteps))
    eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    tc = t[:, None].to(x0.dtype)
    x_t = torch.where(noisy[:, None], (1 - tc) * x0 + tc * eps, x0)
    target = (eps - x0)[packed.mse_rows]
    return replace(packed, vae_tokens=x_t, vae_timesteps=t, flow_target=target)


@dataclass
class LossOutput:
    total: torch.Tensor
    ce: torch.Tensor
    mse: torch.Tensor
    num_ce: int
    num_mse: int


def compute_losses(out, packed: PackedSequence, ce_weight: float = 1.0, mse_weight: float = 1.0,
                   num_ce: float | None = None, num_mse: float | None = None) -> LossOutput:
    """total = ce_weight * ce + mse_weight * mse.

    ce sums token cross-entropies, mse sums per-token means over channels; each is divided
    by num_ce / num_mse (default: this pack's counts; pass global counts / world size when
    sharding so every token weighs the same).
    """
    n_ce, n_mse = packed.ce_labels.numel(), packed.mse_rows.numel()
    zero = out.velocity.sum() * 0 + out.logits.sum() * 0   # keeps the graph when a term is empty
    ce = zero
    if n_ce:
        ce = F.cross_entropy(out.logits.float(), packed.ce_labels, reduction="sum") / (num_ce or n_ce)
    mse = zero
    if n_mse:
        if packed.flow_target is None:
            raise ValueError("packed sequence has noisy latents but no flow_target; call add_flow_noise first")
        if getattr(out, "x0", None) is not None:
            # x0 loss for anchored heads: x0 = x_t - t * (eps - x0) recovers the target
            # exactly, and the velocity loss would weigh small-t errors by 1/t^2
            rows = packed.mse_rows
            t = packed.vae_timesteps[rows].float()[:, None]
            x0 = packed.vae_tokens[rows].float() - t * packed.flow_target.float()
            err = (out.x0.float() - x0).pow(2).mean(dim=1)
        else:
            err = (out.velocity.float() - packed.flow_target.float()).pow(2).mean(dim=1)
        mse = err.sum() / (num_mse or n_mse)
    return LossOutput(total=ce_weight * ce + mse_weight * mse, ce=ce, mse=mse, num_ce=n_ce, num_mse=n_mse)
