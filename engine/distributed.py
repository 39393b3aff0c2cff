"""Multi-process pruning under torchrun: process group, FSDP2 sharding of the frozen model, data split, gate sync."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .runtime import resolve_device

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistContext:
    """Where this process sits: rank `rank` of `world` processes, computing on `device`."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """The one process that writes files and prints."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def current() -> DistContext:
    """The context of an already set-up run (rank 0 of 1 when not distributed); never initialises anything."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistContext()
    dev = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    return DistContext(dist.get_rank(), dist.get_world_size(), dev)


def setup(device: str | torch.device | None = None) -> DistContext:
    """Join the process group torchrun describes (WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR/PORT).

    One process (no WORLD_SIZE, or 1): nothing is initialised and the context is rank 0 of 1 on
    `device`. Several: NCCL with one GPU per local rank when CUDA is present, else gloo on CPU.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext(device=resolve_device(device))
    dev = resolve_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    elif dev.type != "cpu":
        raise ValueError(f"multi-process pruning runs on CUDA or CPU, not {dev.type}")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return DistContext(dist.get_rank(), dist.get_world_size(), dev)


def teardown() -> None:
    """Leave the process group (a no-op when none was joined)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def shard(model: nn.Module, ctx: DistContext) -> nn.Module:
    """Shard every transformer block of the frozen model across the ranks with FSDP2 (`fully_shard`).

    Embedding, final norm and unembedding stay replicated (small next to the blocks). The masked
    forward gathers each block explicitly around its use (engine/checkpoint.py `gathered`), since it
    reads parameters rather than calling the block. Returns the same module (sharded in place, once,
    at load time; nothing per run is stored on it). A no-op on one process.
    """
    if not ctx.enabled:
        return model
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    mesh = init_device_mesh(ctx.device.type, (ctx.world,))
    for blk in model.blocks:
        fully_shard(blk, mesh=mesh, reshard_after_forward=True)
    return model


def local_slice(n: int, ctx: DistContext | None = None) -> slice:
    """This rank's share of a global batch of `n` examples (contiguous, equal sizes).

    Raises:
        ValueError: `n` is not a multiple of the number of processes (the gate gradient would be
            a mean over unequal shares and differ from the single-process run).
    """
    ctx = ctx or current()
    if n % ctx.world:
        raise ValueError(f"batch of {n} examples cannot be split evenly over {ctx.world} processes; "
                         f"use a batch size that is a multiple of {ctx.world}")
    per = n // ctx.world
    return slice(ctx.rank * per, (ctx.rank + 1) * per)


def average_gradients(params: Iterable[Tensor], ctx: DistContext | None = None) -> None:
    """All-reduce (mean) the gradients of the replicated gate parameters, in one flat message.

    With equal local batches, the mean of the per-rank mean losses is the global mean, so every rank
    then takes the same optimizer step and the gates stay identical (they are never broadcast again).
    """
    ctx = ctx or current()
    grads = [p.grad for p in params if p.grad is not None]
    if not ctx.enabled or not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= ctx.world
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def mean_scalar(value: float, ctx: DistContext | None = None) -> float:
    """The mean of a per-rank number over all ranks (for logging the global loss)."""
    ctx = ctx or current()
    if not ctx.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t) / ctx.world


def any_rank(flag: bool, ctx: DistContext | None = None) -> bool:
    """True on every rank when it is True on any (a stop asked on one rank stops all of them at the same step;
    otherwise the others would wait forever in the next step's all-reduce)."""
    ctx = ctx or current()
    if not ctx.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)
