"""Runs that outlive the page (AppTest): re-attach after a reload, the Runs list, interrupted runs, a missed target."""

from __future__ import annotations

import json
import os
import time

import pytest

from engine.shortfall import floor_sparsity
from explorer import jobs
from explorer.runs import RunStore, process_token

from .test_pages import _app, _ok, _pruned, _record, _text, _wait_for_job, _with_upload


@pytest.fixture(autouse=True)
def _stop_runs_after():
    """A test's background runs must not go on using the CPU after it."""
    yield
    jobs.stop_all()


def _store() -> RunStore:
    return RunStore(os.environ["CIRCUIT_LIBRARY"])


def _start_long_run(at) -> str:  # noqa: ANN001
    at.number_input(key="prune.tiny.steps").set_value(5000)
    at.number_input(key="prune.tiny.batch").set_value(4)
    _ok(at.button(key="prune.run").click().run())
    run_id = at.session_state["session"].runs[-1]
    t0 = time.time()
    while not (_store().read(run_id) or {}).get("steps_done"):
        assert time.time() - t0 < 90, "the run wrote no progress"
        time.sleep(0.1)
    return run_id


def _reload(at):  # noqa: ANN001, ANN202
    """A new browser session on the same URL: session state is gone, the query string stays."""
    fresh = _app()
    fresh.query_params.update(at.query_params)
    return _ok(fresh.run())


def test_reload_reattaches_to_the_running_run(app_env):
    at = _ok(_app().run())
    run_id = _start_long_run(at)
    assert at.query_params["run"] == run_id                    # the URL names the run
    again = _reload(at)
    assert any("in the background" in i.value for i in again.info), _text(again)
    assert again.button(key=f"prune.cancel.{run_id}")          # Cancel is back
    assert again.get("vega_lite_chart")                        # and the live curves
    again.button(key=f"prune.cancel.{run_id}").click()
    _ok(again.run())
    _wait_for_job(again)
    assert _record(again)["state"] == "cancelled" and "stopped early" in _text(again)
    assert any(b.label == "Save this result to the library" for b in again.button)


def test_runs_list_shows_every_run_and_attaches(app_env):
    at = _ok(_app().run())
    at.number_input(key="prune.tiny.steps").set_value(3)
    _ok(at.button(key="prune.run").click().run())
    _wait_for_job(at)
    first = at.session_state["session"].runs[-1]
    running = _start_long_run(_ok(_app().run()))               # started by another browser
    other = _ok(_app().run())                                  # a third browser, no ?run= in its URL
    assert not any("in the background" in i.value for i in other.info)
    table = other.dataframe[-1].value
    assert sorted(table["state"].tolist()) == ["finished", "running"]
    labels = table["run"].tolist()
    assert len(set(labels)) == 2 and all(" · target " in s and "#" in s for s in labels)
    other.selectbox(key="prune.runs_pick").set_value(running)
    _ok(other.run())
    _ok(other.button(key="prune.runs_attach").click().run())
    assert other.button(key=f"prune.cancel.{running}") and other.query_params["run"] == running
    other.selectbox(key="prune.runs_pick").set_value(first)
    _ok(other.run())
    _ok(other.button(key="prune.runs_attach").click().run())  # a finished one: its result
    assert "Saved to the library" in _text(other)


def test_run_cut_off_by_a_server_restart_is_interrupted(app_env):
    store = _store()
    record = store.create({"state": "running", "label": "tiny-ioi · target 0.95 · 03:45:12 #dead", "model": "tiny",
                           "task": "ioi", "n_steps": 1000, "steps_done": 340, "target_sparsity": 0.95,
                           "process": process_token()})   # this process, but no worker: its thread is gone
    at = _app()
    at.query_params["run"] = record["id"]
    _ok(at.run())
    assert store.read(record["id"])["state"] == "interrupted"
    assert not any("in the background" in i.value for i in at.info)
    assert any("interrupted" in w.value and "step 340 of 1000" in w.value for w in at.warning), _text(at)
    assert at.dataframe[-1].value["state"].tolist() == ["interrupted"]


def test_a_run_short_of_its_target_says_so(app_env):
    at = _pruned(2)
    record = _record(at)
    warning = "\n".join(w.value for w in at.warning)
    assert "short of the target 0.95" in warning and "Steps, e.g. 4 instead of 2" in warning, warning
    assert "LR Lagrange multipliers" in warning
    assert record["circuit"].startswith(f"tiny-ioi-s{floor_sparsity(record['reached_sparsity'])}-")
    assert "-s0.95-" not in record["circuit"]


def test_uploaded_data_prunes_in_a_worker_process(app_env, monkeypatch):
    """A small model's run goes to a worker process that reads the upload from the run's folder."""
    monkeypatch.delenv("CIRCUIT_EXPLORER_RUN_IN")             # the app's default: a process for a small model
    at = _with_upload()
    at.number_input(key="prune.tiny.steps").set_value(2)
    at.selectbox(key="prune.tiny.graph").set_value("split")   # the worker loads the graph the form chose
    _ok(at.button(key="prune.run").click().run())
    _wait_for_job(at)
    record = _record(at)
    assert RunStore(os.environ["CIRCUIT_LIBRARY"]).read(record["id"]) and record["state"] == "finished", record
    from explorer.library import Library
    assert Library().load(record["circuit"]).graph.split_embeddings
    assert record["task"] == "mine" and record["data"] == "mine.jsonl", record
    assert record["process"].split(":")[1] != str(os.getpid())             # not a thread of this process
    assert json.loads((_store().run_dir(record["id"]) / "data.jsonl").read_bytes().splitlines()[0])["clean"] == \
        "True and False is<predict> True</predict>"             # the uploaded file, as uploaded
    assert record["circuit"].startswith("tiny-mine-s")
