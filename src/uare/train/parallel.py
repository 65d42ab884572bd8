"""Process groups and FSDP2 sharding; the only place that touches torch.distributed
(nothing in model/ does).

- `DistEnv.from_environment()` reads torchrun's RANK/WORLD_SIZE/LOCAL_RANK and starts the
  process group: NCCL on CUDA, gloo on CPU.
- `parallelize(model, env, section)` wraps each decoder layer and then the root with
  `fully_shard` (FSDP2), with bf16 parameters and fp32 gradient reduction on CUDA, and
  activation checkpointing of the decoder layers on CUDA (both follow "auto").
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistEnv:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls) -> "DistEnv":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
        cuda = torch.cuda.is_available()
        device = torch.device("cuda", local) if cuda else torch.device("cpu")
        if cuda:
            torch.cuda.set_device(device)
        if world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if cuda else "gloo")
        return cls(rank, world, local, device)

    def all_reduce(self, t: torch.Tensor, op: str = "sum") -> torch.Tensor:
        if self.world == 1:
            return t
        x = t.to(self.device if self.device.type == "cuda" else "cpu")
        dist.all_reduce(x, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
        return x.to(t.device)

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            # every rank past its last collective before any tears the group down: a gloo
            # rank destroyed while its peer still talked aborted ("terminate called without
            # an active exception", SIGABRT) in 2 of 15 two-process test runs
            dist.barrier()
            dist.destroy_process_group()


def _choice(value: str, auto: bool, what: str) -> bool:
    if value not in ("auto", "on", "off", "bf16", "fp32"):
        raise ValueError(f"parallel.{what}: expected auto/on/off, got {value!r}")
    return auto if value == "auto" else value in ("on", "bf16")


def _add_zero_link(output, params: list):
    """output with 0 * sum(params) added to its first floating tensor."""
    if not params:
        return output
    zero = sum(p.sum() for p in params) * 0.0
    if torch.is_tensor(output):
        return output + zero.to(output.dtype)
    if isinstance(output, (tuple, list)):
        items = list(output)
        for i, x in enumerate(items):
            if torch.is_tensor(x) and x.is_floating_point():
                items[i] = x + zero.to(x.dtype)
                return type(output)(items) if isinstance(output, tuple) else items
    if hasattr(output, "velocity"):  # ModelOutput
        output.velocity = output.velocity + zero.to(output.velocity.dtype)
    return output


def link_all_parameters(model: torch.nn.Module) -> None:
    """Give every trainable parameter a gradient on every forward, used or not.

    A pack without image tokens skips the gen expert; FSDP2 then reduce-scatters a
    different set of gradients on different ranks and the collective fails. Linking each
    layer's (and the root's own) parameters with a zero-weight term makes the gradient
    set the same on every rank. It is applied in every run, sharded or not, so AdamW sees
    the same (zero) gradients whatever the world size.
    """
    def hook_for(params):
        return lambda module, args, output: _add_zero_link(output, [p for p in params() if p.requires_grad])

    for layer in model.llm.layers:
        layer.register_forward_hook(hook_for(layer.parameters))
    root = [(n, p) for n, p in model.named_parameters() if not n.startswith("llm.layers.")]
    model.register_forward_hook(hook_for(lambda: [p for _, p in _live(model, root)]))


def _live(model: torch.nn.Module, named: list):
    """Current parameter objects by name (FSDP2 swaps them while unsharded)."""
    params = dict(model.named_parameters())
    return [(n, params.get(n, p)) for n, p in named]


def parallelize(model: torch.nn.Module, env: DistEnv, section) -> torch.nn.Module:
    """Shard and checkpoint in place; returns the model (the same object)."""
    cuda = env.device.type == "cuda"
    link_all_parameters(model)
    if _choice(section.activation_checkpointing, cuda, "activation_checkpointing"):
        from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

        layers = model.llm.layers
        for i in range(len(layers)):
            layers[i] = checkpoint_wrapper(layers[i])
    if not _choice(section.fsdp, env.world > 1, "fsdp"):
        return model
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    bf16 = _choice(section.mixed_precision, cuda, "mixed_precision")
    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 \
        else MixedPrecisionPolicy()
    for layer in model.llm.layers:
        fully_shard(layer, mp_policy=mp)
    fully_shard(model, mp_policy=mp)
    return model


def full_tensor(t: torch.Tensor) -> torch.Tensor:
    """A plain tensor from a possibly sharded DTensor (collective when sharded)."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def like(src: torch.Tensor, full: torch.Tensor) -> torch.Tensor:
    """`full` laid out like `src` (sharded the same way when src is a DTensor)."""
    if hasattr(src, "device_mesh"):
        from torch.distributed.tensor import distribute_tensor

        return distribute_tensor(full.to(src.dtype), src.device_mesh, src.placements)
    return full.to(src.device, src.dtype)
