"""The memory line under the Prune form: the engine's estimate of one step against the device's free memory (pure)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import torch

import engine

if TYPE_CHECKING:
    from engine import MaskedTransformer, PruneConfig, Task

MARGIN = 1.25  # the engine's advice: add ~25% to the estimate for allocator fragmentation


def size(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def free_bytes(device: torch.device | str) -> int | None:
    """Free memory of a CUDA device, or available RAM for the CPU (Linux); None when unknown."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return int(torch.cuda.mem_get_info(dev)[0])
    if dev.type == "cpu" and hasattr(os, "sysconf") and "SC_AVPHYS_PAGES" in os.sysconf_names:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return None


def note(model: MaskedTransformer, task: Task, cfg: PruneConfig, free: int | None = None) -> tuple[str, bool]:
    """(markdown line, whether it fits) for one pruning step of `model` on `task`'s train split with `cfg`.

    Args:
        free: bytes free on the model's device; None = ask the device.

    Raises:
        ValueError: the engine cannot estimate these sizes.
    """
    data = task.split("train")
    est = engine.estimate_memory(model.cfg, cfg.batch_size, int(data.clean.shape[1]), model.dtype,
                                 n_positions=int(data.positions.shape[1]), device=model.device.type)
    free = free_bytes(model.device) if free is None else free
    parts = ", ".join(f"{name} {size(v)}" for name, v in (("weights", est.weights), ("buffers", est.buffers),
                                                         ("activations", est.activations), ("gates", est.gates)))
    text = (f":material/memory: Memory estimate for one step at batch {cfg.batch_size}: **{size(est.total)}** "
            f"on `{model.device}` ({parts}; add ~25% for fragmentation)"
            + (f" · {size(free)} free" if free is not None else ""))
    return text, free is None or est.total * MARGIN <= free
