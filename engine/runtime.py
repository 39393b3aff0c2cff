"""Devices and seeds: resolve_device() and seed_everything(), called explicitly, never at import."""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """CUDA when present, else Apple MPS, else CPU; an explicit choice is validated."""
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r} requested but MPS is not available")
    return dev


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; returns a CPU generator for the caller's own sampling."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3   # glibc <malloc.h>
_allocator_tuned = False


def keep_freed_memory() -> bool:
    """On Linux/glibc, keep freed blocks up to 32 MiB for reuse instead of returning them to the system.

    PyTorch's CPU allocator is plain malloc: every multi-MB temporary of a pruning step is then a
    fresh mmap whose pages fault in one by one at first touch, step after step (10-20% of a small
    model's step). This is what a caching allocator does on a GPU. Process-wide and idempotent;
    a no-op (False) where mallopt is unavailable.
    """
    global _allocator_tuned
    if _allocator_tuned:
        return True
    try:
        import ctypes
        import ctypes.util
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = all(libc.mallopt(param, value) == 1 for param, value in (
            (_M_MMAP_THRESHOLD, 32 * 2**20), (_M_TRIM_THRESHOLD, 1 << 30), (_M_TOP_PAD, 64 * 2**20)))
    except (OSError, AttributeError):
        return False
    _allocator_tuned = ok
    return ok


SMALL_MODEL = 4096
"""d_model * n_layers at or below which a model's CPU thread count is chosen by the caller (is_small_model)."""


def is_small_model(cfg) -> bool:  # noqa: ANN001 - any config with d_model and n_layers
    """A model whose products are too small to share well between busy cores: the CLI gives it the idle cores
    (idle_cores), the app one thread (it serves several sessions at once)."""
    return cfg.d_model * cfg.n_layers <= SMALL_MODEL


def idle_cores() -> int:
    """CPU cores not busy with other work now: cores minus the whole part of the 1-minute load average, at least 1.

    Small models scale to 2 threads on an idle machine (the embedded IOI run: 67 s on one thread, 47 s on two,
    2-core machine, load 0.5) but collapse when other jobs hold the cores (452 s on two threads vs 148 s on
    one at load 3.2), so their thread count follows the load.
    """
    cores = os.cpu_count() or 1
    try:
        busy = int(os.getloadavg()[0])
    except OSError:   # no load average on this platform
        busy = 0
    return max(1, min(cores, cores - busy))
