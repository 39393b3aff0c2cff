"""The Prune page's memory line: the engine's estimate, the free memory, and whether the run fits."""

from __future__ import annotations

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
    assert memory_note.free_bytes("cpu") is None or memory_note.free_bytes("cpu") > 0
