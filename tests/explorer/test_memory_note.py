"""The Prune page's memory line: the engine's estimate, the free memory, and whether the run fits."""

from __future__ import annotations

from pathlib import Path

import pytest

import engine
from explorer import memory_note


def test_note_follows_batch_and_flags_what_does_not_fit(tiny_model, tiny_task):
    small, fits = memory_note.note(tiny_model, tiny_task, engine.PruneConfig(batch_size=4), free=2**40)
    assert fits and "batch 4" in small and "free" in small
    big, _ = memory_note.note(tiny_model, tiny_task, engine.PruneConfig(batch_size=400), free=2**40)
    assert big != small
    _, fits = memory_note.note(tiny_model, tiny_task, engine.PruneConfig(batch_size=4), free=1)
    assert not fits


def test_sizes_read_well():
    assert memory_note.size(3 * 2**20) == "3.0 MiB" and memory_note.size(5 * 2**30) == "5.00 GiB"


def test_free_cpu_memory_is_what_the_kernel_reports():
    meminfo = Path("/proc/meminfo")
    if not meminfo.is_file():
        pytest.skip("no /proc/meminfo to compare with (not Linux)")
    kib = {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in meminfo.read_text().splitlines())}
    free = memory_note.free_bytes("cpu")
    assert free is not None
    # SC_AVPHYS_PAGES is MemFree (page cache not counted); both move while other jobs run
    assert abs(free - kib["MemFree"] * 1024) < max(0.2 * kib["MemFree"] * 1024, 256 * 2**20)
    assert free < kib["MemTotal"] * 1024
