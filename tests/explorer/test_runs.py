"""Run records (explorer/runs.py) and the background job that writes them (explorer/jobs.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass, field

import pytest

from engine import PruneConfig
from engine.shortfall import floor_sparsity
from explorer import jobs, runs
from explorer.library import Library


@dataclass(frozen=True)
class Step:
    step: int
    kl: float
    edge_sparsity: float = 0.0
    edge_target: float = 0.0
    elapsed_s: float = 0.0


@dataclass
class Log:
    steps: list = field(default_factory=list)
    stopped_early: bool = False
    warnings: list = field(default_factory=list)


def _job(store: runs.RunStore, run_fn, on_done=None) -> jobs.PruneJob:  # noqa: ANN001
    record = store.create({"state": "running", "label": "x", "n_steps": 50})
    return jobs.PruneJob(run_fn, 50, on_done, "x", "kl", store, record)


def test_store_round_trip_ids_and_atomic_files(tmp_path):
    store = runs.RunStore(tmp_path)
    a, b = store.create({"state": "running", "n": 1}), store.create({"state": "running", "n": 2})
    assert a["id"] != b["id"] and runs.valid_id(a["id"]) and a["process"] == runs.process_token()
    assert store.read(a["id"])["n"] == 1
    store.write({**a, "n": 3})
    assert store.read(a["id"])["n"] == 3                     # the cache follows the file
    assert [p.name for p in store.run_dir(a["id"]).iterdir()] == ["run.json"]   # no temporary file left
    assert {r["id"] for r in store.all()} == {a["id"], b["id"]}
    for bad in ("../../etc", "x", "20261202-034512-a1b2/../.."):
        assert store.read(bad) is None
        with pytest.raises(ValueError):
            store.run_dir(bad)


def test_thin_keeps_first_last_and_at_most_max():
    rows = list(range(1000))
    out = runs.thin(rows, 240)
    assert len(out) == 240 and out[0] == 0 and out[-1] == 999 and out == sorted(out)
    assert runs.thin(rows[:10], 240) == rows[:10]


def test_settle_marks_only_runs_without_a_worker(tmp_path):
    store = runs.RunStore(tmp_path)
    orphan = store.create({"state": "running", "steps_done": 12, "n_steps": 100})     # ours, no live worker
    live = store.create({"state": "running"})
    done = store.create({"state": "finished"})
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        elsewhere = store.create({"state": "running", "process": runs.process_token(other.pid)})
        dead = store.create({"state": "running", "process": runs.process_token(other.pid) + "0"})   # pid reused
        assert sorted(store.settle({live["id"]})) == sorted([orphan["id"], dead["id"]])
        assert store.read(elsewhere["id"])["state"] == "running"   # another server process still runs it
    finally:
        other.kill()
        other.wait()
    assert store.read(orphan["id"])["state"] == "interrupted" and "step 12 of 100" in store.read(orphan["id"])["error"]
    assert store.read(live["id"])["state"] == "running" and store.read(done["id"])["state"] == "finished"
    assert sorted(store.settle(set())) == sorted([live["id"], elsewhere["id"]])   # its process has ended now


def test_job_writes_progress_result_and_cancel(tmp_path, monkeypatch):
    monkeypatch.setattr(jobs, "WRITE_EVERY_S", 0.0)
    store, gate, at9, seen = runs.RunStore(tmp_path), threading.Event(), threading.Event(), []

    def run(on_step):  # noqa: ANN001
        log = Log()
        for i in range(50):
            log.steps.append(Step(i, 1.0 / (i + 1), elapsed_s=0.1 * i))
            if i == 9:
                seen.append(store.read(job.run_id))     # what a page reads mid-run
                at9.set()
                gate.wait(5)
            if on_step(log.steps[-1]):
                log.stopped_early = True
                break
        return "circuit", log

    job = _job(store, run, on_done=lambda c, log: {"circuit": f"saved-{len(log.steps)}"})
    job.start()
    assert at9.wait(5) and jobs.live(job.run_id) is job
    assert jobs.settle(store) == []                             # a live worker is never marked interrupted
    job.cancel()
    gate.set()
    job.wait(5)
    record = store.read(job.run_id)
    assert seen[0]["state"] == "running" and seen[0]["steps_done"] == 9 and len(seen[0]["log"]) == 9
    assert record["state"] == "cancelled" and record["steps_done"] == 10 and record["circuit"] == "saved-10"
    assert record["log"][-1] == {"step": 9, "kl": 0.1, "edge_sparsity": 0.0, "edge_target": 0.0, "elapsed_s": 0.9}
    assert jobs.live(job.run_id) is None and jobs.settle(store) == []


def test_job_failure_keeps_the_log_so_far(tmp_path, monkeypatch):
    monkeypatch.setattr(jobs, "WRITE_EVERY_S", 0.0)
    store = runs.RunStore(tmp_path)

    def boom(on_step):  # noqa: ANN001
        for i in range(3):
            on_step(Step(i, 0.5))
        raise RuntimeError("out of memory")

    job = _job(store, boom).start()
    job.wait(5)
    record = store.read(job.run_id)
    assert record["state"] == "failed" and record["error"] == "RuntimeError: out of memory"
    assert record["steps_done"] == 3 and len(record["log"]) == 3


def test_cancel_reaches_a_worker_through_its_record_folder(tmp_path, monkeypatch):
    """Cancel pressed in another server process: a file in the run's folder, read at the next record write."""
    monkeypatch.setattr(jobs, "WRITE_EVERY_S", 0.0)
    store = runs.RunStore(tmp_path)

    def run(on_step):  # noqa: ANN001
        log = Log()
        for i in range(10_000):
            log.steps.append(Step(i, 0.5))
            if i == 3:
                store.ask_cancel(job.run_id)
            if on_step(log.steps[-1]):
                log.stopped_early = True
                break
        return "c", log

    job = _job(store, run)
    job.start().wait(5)
    assert store.read(job.run_id)["state"] == "cancelled" and store.read(job.run_id)["steps_done"] == 4


def test_prune_job_names_the_reached_sparsity_and_says_it_missed(tmp_path, tiny_model, tiny_task):
    lib = Library(tmp_path / "lib", tmp_path / "none")
    cfg = PruneConfig(n_steps=3, batch_size=4, edge_sparsity=0.9)
    a = jobs.prune_job(tiny_model, tiny_task, cfg, "m", lib)
    b = jobs.prune_job(tiny_model, tiny_task, cfg, "m", lib)      # the same settings, started together
    a.wait(60)
    b.wait(60)
    store = runs.RunStore(lib.folder)
    ra, rb = store.read(a.run_id), store.read(b.run_id)
    assert ra["state"] == rb["state"] == "finished" and ra["label"] != rb["label"]
    assert ra["label"].split(" · ")[:2] == ["m-tiny", "target 0.9"]
    entry = lib.get(ra["circuit"])
    reached = lib.load(entry).sparsity
    assert reached < 0.85 and entry.name.startswith(f"m-tiny-s{floor_sparsity(reached)}-")
    assert "s0.9-" not in entry.name and not entry.name.endswith("-2")
    side = json.loads(entry.path.with_suffix(".json").read_text())
    assert side["reached_sparsity"] == pytest.approx(reached) and side["target_sparsity"] == 0.9
    assert "short of the target 0.9" in ra["miss"] and "Steps, e.g. 6 instead of 3" in ra["miss"]
    assert side["target_miss"] == ra["miss"]
    assert sorted(e.name for e in lib.entries()) == sorted([ra["circuit"], rb["circuit"]])


def test_prune_job_keeps_the_circuit_when_the_library_cannot_save(tmp_path, tiny_model, tiny_task, monkeypatch):
    lib = Library(tmp_path / "lib", tmp_path / "none")

    def full_disk(*args, **kwargs):  # noqa: ANN002, ANN003
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(lib, "save", full_disk)
    job = jobs.prune_job(tiny_model, tiny_task, PruneConfig(n_steps=2, batch_size=4), "tiny", lib)
    job.wait(60)
    store = runs.RunStore(lib.folder)
    record = store.read(job.run_id)
    assert record["state"] == "failed" and "No space left" in record["error"]
    assert (store.run_dir(job.run_id) / record["circuit_file"]).is_file()
    assert lib.entries() == []                                        # run folders are not library circuits


def test_live_curves_spec_has_each_series_once_per_thinned_step():
    from explorer import charts

    rows = [runs.step_row(Step(i, 1.0 / (i + 1), edge_sparsity=i / 2000, edge_target=i / 1000)) for i in range(1000)]
    spec = charts.prune_curves_spec(runs.thin(rows), "kl")
    values = spec["data"]["values"]
    assert len(values) == runs.MAX_POINTS and values[-1]["step"] == 999 and values[-1]["edge target"] == 0.999
    left, right = spec["hconcat"]
    assert left["encoding"]["y"]["field"] == "KL" and right["transform"][0]["fold"] == ["edge sparsity", "edge target"]
    with_nodes = charts.prune_curves_spec([{**rows[0], "node_sparsity": 0.1, "node_target": 0.2}], "mse")
    assert with_nodes["hconcat"][1]["transform"][0]["fold"][2:] == ["node sparsity", "node target"]
    assert with_nodes["hconcat"][0]["encoding"]["y"]["field"] == "squared error"


def test_worker_process_runs_and_a_killed_one_is_interrupted(tmp_path):
    """A run in a worker process writes its record; when the process dies mid-run, settle marks it interrupted."""
    import signal
    import time

    lib = Library(tmp_path / "lib", tmp_path / "none")
    store = runs.RunStore(lib.folder)
    cfg = PruneConfig(n_steps=100_000, batch_size=4)
    run_id = jobs.spawn_prune("tracr-xproportion", "", {"kind": "tracr", "program": "xproportion", "seed": 0}, cfg, lib)
    try:
        t0 = time.time()
        while not (store.read(run_id) or {}).get("steps_done"):
            assert time.time() - t0 < 120, (store.run_dir(run_id) / "worker.log").read_text()
            time.sleep(0.2)
        record = store.read(run_id)
        assert record["state"] == "running" and record["task"] == "tracr-xproportion"
        assert jobs.settle(store) == []                             # its process is alive
        pid = int(record["process"].split(":")[1])
        assert pid != os.getpid()
        os.kill(pid, signal.SIGKILL)
        jobs._PROCS[run_id].wait(30)
    finally:
        jobs.stop_all()
    assert jobs.settle(store) == [run_id] and store.read(run_id)["state"] == "interrupted"
