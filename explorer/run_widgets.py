"""Streamlit blocks of pruning runs: the browser's runs kept in the URL, live progress, the result, the Runs list.

A run is a server thread with a record on disk (explorer/jobs.py, explorer/runs.py); a page only reads records. The
runs a browser started are named in its URL (`?run=<id>`), so a reload, or a tab reopened from history, re-attaches
to them; any run of the library can be attached from the Runs list.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import streamlit as st

from . import jobs, resources, runs, state
from .text import literal

if TYPE_CHECKING:
    from engine import MaskedTransformer, PruneConfig, Task
    from engine.budget_spec import Budget

URL_KEY = "run"
ENV_RUN_IN = "CIRCUIT_EXPLORER_RUN_IN"
"""`process` or `thread`: where runs go (default: a worker process for small models, a thread for large ones)."""
FOLLOW_IN_URL = 3  # runs named in the URL: the browser's latest
POLL_S = 2.0       # live view: how often it reads the record (the worker rewrites it at most every second)
CHART_S = 5.0      # ... and how often it redraws the curves (only when steps arrived)
_SPECS: dict[str, tuple[int, dict]] = {}  # run id -> (steps drawn, chart spec): rebuilt only when steps arrived


def store() -> runs.RunStore:
    return runs.RunStore(resources.library().folder)


def follow_runs() -> None:
    """On every page load (app.py): follow the runs the URL names and keep this session's latest in the URL."""
    sess = state.session()
    for run_id in st.query_params.get_all(URL_KEY):
        if runs.valid_id(run_id) and run_id not in sess.runs:
            sess.runs.append(run_id)
    latest = sess.runs[-FOLLOW_IN_URL:]
    if latest and st.query_params.get_all(URL_KEY) != latest:
        st.query_params[URL_KEY] = latest


def follow(run_id: str) -> None:
    sess = state.session()
    if run_id in sess.runs:
        sess.runs.remove(run_id)
    sess.runs.append(run_id)
    st.query_params[URL_KEY] = sess.runs[-FOLLOW_IN_URL:]


def followed(running: bool) -> list[dict]:
    """Records of the runs this browser follows, newest first: the running ones, or the others."""
    jobs.settle(store())  # a record left "running" by a stopped server becomes "interrupted" first
    records = [r for r in (store().read(i) for i in reversed(state.session().runs)) if r is not None]
    return [r for r in records if (r["state"] == "running") == running]


def start(model: MaskedTransformer, task: Task, cfg: PruneConfig, model_name: str, budget: Budget | None = None) -> str:
    """Start a run in the background, follow it, and return its id. A small model's run goes to a worker process
    (a watching page then costs it no interpreter lock); a large one's to a thread, which shares the loaded weights."""
    from engine.runtime import is_small_model  # noqa: PLC0415 - torch is loaded by now (the model is)

    from .prune_widgets import chosen_graph  # noqa: PLC0415 - the form's Graph control

    sess = state.session()
    upload = sess.data_upload if state.get("prune.source") == "Upload JSONL" and sess.data_upload else None
    split = chosen_graph(model_name) == "split"  # the same tokenizer and task serve both graphs
    where = os.environ.get(ENV_RUN_IN, "")
    if where == "process" or (where != "thread" and is_small_model(model.cfg)):
        program = resources.tracr_program(model_name)
        spec = {"kind": "tracr", "program": program, "seed": 0} if program else \
            {"kind": "jsonl", "file": upload[0]} if upload else \
            {"kind": "builtin", "name": task.name, "n": resources.N_EXAMPLES, "seed": 0}
        run_id = jobs.spawn_prune(model_name, resources.model_choices().get(model_name, model_name),
                                  {**spec, "split": split}, cfg, resources.library(), upload[1] if upload else None,
                                  task.loss, budget)
    else:
        if split and not model.graph.split_embeddings:
            model = resources.get_model(model_name, split=True)
        run_id = jobs.prune_job(model, task, cfg, model_name, resources.library(), upload[0] if upload else "",
                                budget=budget).run_id
    follow(run_id)
    return run_id


def live_progress(run_id: str) -> None:
    """A running run: progress, ETA and Cancel every POLL_S, curves every CHART_S (both read its record)."""
    _progress(run_id)
    _curves(run_id)


@st.fragment(run_every=POLL_S)
def _progress(run_id: str) -> None:
    """Progress, ETA, Cancel and live curves of a running run, from its record; reruns the page when it ends."""
    record = store().read(run_id)
    if record is None or record["state"] != "running":
        st.rerun()
    done, n = record.get("steps_done", 0), record["n_steps"]
    st.info(f"Pruning **{literal(record['label'])}** in the background: it goes on if you close or reload the "
            "page, and this page finds it again.")
    st.progress(min(1.0, done / n), text=f"Step {done} / {n} · ETA {jobs.format_eta(jobs.eta_s(record))}")
    asked = store().cancel_asked(run_id) or (jobs.live(run_id) is not None and jobs.live(run_id).cancelled)
    if st.button("Cancel", key=f"prune.cancel.{run_id}", disabled=asked):
        jobs.cancel(store(), run_id)
        st.toast("Stopping after the current step…")


@st.fragment(run_every=CHART_S)
def _curves(run_id: str) -> None:
    """The running run's curves: a redraw costs the browser more than the progress line, so less often."""
    record = store().read(run_id)
    if record is not None and record.get("log"):
        _chart(record, key=f"prune.live.{run_id}")


def _chart(record: dict, key: str | None = None) -> None:
    """The run's loss and sparsity curves, thinned; the spec is rebuilt only when new steps arrived."""
    from . import charts  # noqa: PLC0415 - plotly stays out of the first render

    done, cached = record.get("steps_done", 0), _SPECS.get(record["id"])
    if cached is None or cached[0] != done:
        spec = charts.prune_curves_spec(runs.thin(record["log"]), record.get("loss", "kl"))
        cached = _SPECS[record["id"]] = (done, spec)
    st.vega_lite_chart(cached[1], key=key)


def last_result() -> None:
    """The latest of this browser's runs that is no longer running: outcome, miss-target advice, circuit."""
    done = followed(running=False)
    if not done:
        return
    record, sess = done[0], state.session()
    st.subheader(f"Last run: {literal(record['label'])}")
    steps, n = record.get("steps_done", 0), record["n_steps"]
    outcome = {"finished": "finished", "cancelled": "stopped early", "failed": "failed",
               "interrupted": "was interrupted"}[record["state"]]
    if record.get("n_edges") is not None:
        st.success(f"Run {outcome} after {steps} of {n} steps in {jobs.format_eta(record.get('elapsed_s', 0))}: "
                   f"**{record['n_edges']:,} edges** kept ({record['reached_sparsity']:.2%} sparsity; target "
                   f"{record['target_sparsity']:.2%}).")
    if record.get("error"):
        (st.warning if record["state"] == "interrupted" else st.error)(
            f"The run {outcome}: {literal(record['error'])}" + (" Start it again with the same settings." if
                                                      record["state"] == "interrupted" else ""))
    if record.get("miss"):
        st.warning(f":material/warning: {record['miss']}")
    if record.get("unfaithful"):
        st.warning(f":material/warning: {record['unfaithful']}")
    for w in record.get("warnings", []):
        st.warning(literal(w))
    if record.get("circuit"):
        sess.circuit_name = f"lib:{record['circuit']}"
        if record.get("budget"):
            _frontier(record)
        st.write(f"Saved to the library as **{literal(record['circuit'])}**.")
    elif record.get("circuit_file"):
        _offer_save(record)
    if record.get("circuit") or record.get("circuit_file"):
        st.page_link("app_pages/circuit.py", label="Open it in the Circuit page", icon=":material/account_tree:")
    if record.get("log"):
        _chart(record)


def _frontier(record: dict) -> None:
    """The sparsity-faithfulness frontier a budget search explored (kept in its circuit's metadata)."""
    from engine.budget_spec import frontier_record  # noqa: PLC0415

    from . import charts, frontier  # noqa: PLC0415 - plotly stays out of the first render

    try:
        found = frontier_record(resources.load_entry(record["circuit"]))
    except (KeyError, ValueError):  # the circuit was deleted or damaged since: no plot
        return
    if found is not None:
        st.plotly_chart(frontier.frontier_figure(found, "metric"), key=f"prune.frontier.{record['id']}",
                        config=charts.plotly_config())


def _offer_save(record: dict) -> None:
    """A result kept in the run's folder (a cancelled run): open it this session, save it to the library."""
    import engine  # noqa: PLC0415 - torch is loaded by now (the model is)
    from engine.shortfall import floor_sparsity  # noqa: PLC0415 - next to its only use

    sess, path = state.session(), store().run_dir(record["id"]) / record["circuit_file"]
    if record["label"] not in sess.unsaved:
        sess.unsaved[record["label"]] = engine.Circuit.load(path)
    sess.circuit_name = f"new:{record['label']}"
    if st.button("Save this result to the library", key=f"prune.save.{record['id']}"):
        circuit = sess.unsaved.pop(record["label"])
        name = f"{record.get('stem', 'run')}-s{floor_sparsity(circuit.sparsity)}-{record['id'][9:]}"
        entry = resources.library().save(circuit, name, {"run": record["id"], "stopped_early": True,
                                                         "target_sparsity": record["target_sparsity"],
                                                         "reached_sparsity": circuit.sparsity})
        store().write({**record, "circuit": entry.name})
        sess.circuit_name = f"lib:{entry.name}"
        st.success(f"Saved as **{literal(entry.name)}**.")


def runs_list() -> None:
    """Every run of this library with its state; attach to one (a running one shows its live progress here)."""
    records = store().all()
    with st.expander(f"Runs in this library ({len(records)})", expanded=False):
        if not records:
            st.caption("No runs yet: they appear here when you start one.")
            return
        st.dataframe([{"started": r.get("started", ""), "run": r.get("label", r["id"]), "state": r["state"],
                       "steps": f"{r.get('steps_done', 0)} / {r.get('n_steps', '?')}",
                       "target": r.get("target_sparsity"), "reached": r.get("reached_sparsity"),
                       "circuit": r.get("circuit") or ("in its run folder" if r.get("circuit_file") else "")}
                      for r in records], hide_index=True)
        labels = {r["id"]: f"{r.get('label', r['id'])} ({r['state']})" for r in records}
        pick = st.selectbox("Run", list(labels), format_func=labels.__getitem__, key="prune.runs_pick")
        verb = "Attach" if (store().read(pick) or {}).get("state") == "running" else "Show"
        if st.button(f"{verb} on this page", key="prune.runs_attach"):
            follow(pick)
            st.rerun()
