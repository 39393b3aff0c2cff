from __future__ import annotations

import math
import os
import threading

import pytest

from explorer import jobs, overlap
from explorer.library import Library, slug

from .conftest import make_circuit


def test_library_never_overwrites(tmp_path):
    lib = Library(tmp_path / "lib", tmp_path / "none")
    a, b = make_circuit(seed=1), make_circuit(seed=2)
    e1 = lib.save(a, "my circuit")
    e2 = lib.save(b, "my circuit")
    assert (e1.name, e2.name) == ("my-circuit", "my-circuit-2")
    assert lib.load("my-circuit").circuit_id == a.circuit_id
    assert lib.load("my-circuit-2").circuit_id == b.circuit_id
    os.utime(e1.path, (1_000_000, 1_000_000))   # two saves can share an mtime tick; make the order known
    os.utime(e2.path, (2_000_000, 2_000_000))
    assert [e.name for e in lib.entries()] == ["my-circuit-2", "my-circuit"]   # newest first
    os.utime(e1.path, (3_000_000, 3_000_000))
    assert [e.name for e in lib.entries()] == ["my-circuit", "my-circuit-2"]


def test_library_concurrent_saves_get_distinct_files(tmp_path):
    lib = Library(tmp_path / "lib", tmp_path / "none")
    out = []
    threads = [threading.Thread(target=lambda i=i: out.append(lib.save(make_circuit(seed=i), "x").name))
               for i in range(6)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(set(out)) == 6 and len(lib.entries()) == 6


def test_library_lists_examples_read_only_and_reports_damage(tmp_path):
    ex = tmp_path / "ex"
    ex.mkdir()
    make_circuit(seed=3, model="m", task="ioi").save(ex / "demo.safetensors")
    (ex / "broken.safetensors").write_bytes(b"not a safetensors file")
    lib = Library(tmp_path / "lib", ex)
    entries = {e.name: e for e in lib.entries()}
    assert entries["demo"].read_only and "m" in entries["demo"].label
    with pytest.raises(ValueError):
        lib.load("broken")
    assert (ex / "broken.safetensors").read_bytes() == b"not a safetensors file"


def test_slug():
    assert slug("../../etc/passwd") == "etc-passwd"
    assert slug("") == "circuit" and slug("a b<script>") == "a-b-script"


def test_hypergeom_matches_exact_small_case():
    # total 10, 4 marked, draw 3: P(X >= 2) = (C(4,2)C(6,1) + C(4,3)) / C(10,3)
    exact = (math.comb(4, 2) * 6 + math.comb(4, 3)) / math.comb(10, 3)
    assert overlap.hypergeom_sf(2, 10, 4, 3) == pytest.approx(exact, rel=1e-12)
    assert overlap.hypergeom_sf(0, 10, 4, 3) == pytest.approx(1.0)
    assert overlap.hypergeom_sf(4, 10, 4, 3) == 0.0


def test_hypergeom_tiny_p_values_stay_positive():
    p = overlap.hypergeom_sf(300, 32491, 1000, 1000)
    assert 0.0 < p < 1e-100


def test_pairwise_overlap_counts():
    a, b = make_circuit(seed=1), make_circuit(seed=2)
    (o,) = overlap.pairwise({"a": a, "b": b})
    assert o.shared == int((a.keep & b.keep).sum())
    assert o.expected == pytest.approx(a.n_edges * b.n_edges / a.graph.n_edges)
    assert o.ratio == pytest.approx(o.shared / o.expected)


def test_job_runs_cancels_and_reports_errors():
    def run(on_step):
        for i in range(1000):
            if on_step(i):
                return "stopped", i
        return "done", 1000

    gate = threading.Event()

    def slow(on_step):
        gate.wait(5)
        return run(on_step)

    job = jobs.PruneJob(slow, 1000, on_done=lambda a, b: (a, b)).start()
    job.cancel()
    gate.set()
    job.wait(5)
    assert job.done and job.result[0] == "stopped" and job.saved == job.result

    def boom(on_step):
        raise ValueError("bad settings")

    bad = jobs.PruneJob(boom, 10).start()
    bad.wait(5)
    assert bad.error == "ValueError: bad settings" and bad.result is None
    assert jobs.format_eta(None) == "estimating…" and jobs.format_eta(75) == "1 min 15 s"
