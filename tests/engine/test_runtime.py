"""engine.runtime: device choice, seeds, the CPU allocator setting."""

import sys

import pytest
import torch

from engine.runtime import keep_freed_memory, resolve_device


def test_resolve_device_defaults_to_an_available_device():
    assert resolve_device().type in {"cpu", "cuda", "mps"}
    assert resolve_device("cpu") == torch.device("cpu")


def test_unavailable_cuda_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")


def test_keep_freed_memory_is_idempotent_and_harmless():
    first = keep_freed_memory()
    assert keep_freed_memory() == first
    if sys.platform.startswith("linux"):
        assert first   # glibc: mallopt accepted every setting
    x = torch.empty(8 * 2**20 // 4)   # MB-sized allocations still work
    x.fill_(1)
    assert float(x.sum()) == x.numel()
