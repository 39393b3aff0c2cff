"""Streamlit blocks of the Experiment page: two prompt styles (tasks) of one model, pruned with the faithful
defaults or taken from the library, then cross-evaluated (engine/experiment.py) and overlapped (overlap.py).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import streamlit as st

from . import circuit_widgets, jobs, resources, state

if TYPE_CHECKING:
    from engine import Circuit, MaskedTransformer
    from engine.budget_spec import Budget
    from engine.experiment import CrossEval

JOB = "experiment.job"   # the page's background run (kept in the session next to the Prune page's own)
PAIRS = [("boolean_instruction", "boolean_fewshot"), ("ioi", "ioi_t1")]


def default_pair(model_name: str, tasks: list[str]) -> tuple[str, str]:
    """The paper's pair for the model (Boolean instruction vs few-shot; IOI vs IOI-t1), else its first two tasks."""
    low = model_name.lower()
    for a, b in PAIRS:
        if a in tasks and b in tasks and a.split("_")[0] in low:
            return a, b
    for a, b in PAIRS:
        if a in tasks and b in tasks:
            return a, b
    return tasks[0], tasks[min(1, len(tasks) - 1)]


def pick_circuit(model_name: str, task_name: str, key: str) -> Circuit | None:
    """A library (or example) circuit of this model; the default is the newest one found on `task_name`."""
    stem = model_name.rstrip("/").split("/")[-1]
    opts = {lb: src for lb, src in circuit_widgets.circuit_options().items() if f" · {stem} · " in f"{lb} · "}
    if not opts:
        st.info(f"No circuit of **{stem}** in the library yet: prune both styles instead.")
        return None
    labels = list(opts)
    default = next((lb for lb in labels if f" · {task_name} · " in f"{lb} · "), labels[0])  # not ioi_t1 for ioi
    label = st.selectbox(f"Circuit for {task_name}", labels, index=labels.index(default), key=key)
    try:
        return circuit_widgets.open_circuit(opts[label])
    except (ValueError, KeyError) as e:
        st.error(f"Cannot open {label}: {e}")
        return None


def start_both(model: MaskedTransformer, model_name: str, task_names: tuple[str, str],
               goal: Budget | None = None) -> jobs.PruneJob:
    """Prune both tasks one after the other with the faithful defaults (a budget search each, to `goal`, default
    engine.budget_spec.DEFAULT_BUDGET); save both."""
    from engine import budget, budget_spec  # noqa: PLC0415 - torch loads after the first page

    tasks = [resources.get_task(model_name, t) for t in task_names]
    search, goal = budget_spec.DEFAULT_SEARCH, goal or budget_spec.DEFAULT_BUDGET
    per_run = search.prune.n_steps + search.max_refines * search.refine_steps
    stem = model_name.rstrip("/").split("/")[-1]

    def run(on_step: Any) -> tuple[Any, Any]:
        done = []
        for i, task in enumerate(tasks):
            def relay(s: Any, i: int = i) -> bool:   # one step count over both searches (progress, ETA)
                return on_step(replace(s, step=i * per_run + s.step))
            done.append(budget.prune_to_budget(model, task, goal, search, on_step=relay))
            if done[-1][1].stopped_early:
                break
        return [c for c, _ in done], [log for _, log in done]

    def save(circuits: list, logs: list) -> Any:
        if len(circuits) < 2 or any(log.stopped_early for log in logs):
            return None
        return [resources.library().save(c, f"{stem}-{t}-{jobs.budget_suffix(goal)}") for c, t in zip(circuits, task_names)]

    job = jobs.PruneJob(run, 2 * per_run, save, f"{stem}: {' and '.join(task_names)}")
    state.remember(JOB, job)
    return job.start()


def current_job() -> jobs.PruneJob | None:
    return state.get(state.KEPT, {}).get(JOB)


@st.fragment(run_every=1.0)
def job_progress() -> None:
    job = current_job()
    if job is None or not job.running:
        if job is not None:
            st.rerun()
        return
    st.progress(min(1.0, job.progress), text=f"Pruning {job.label}: step {len(job.steps)} / {job.n_steps} · "
                                             f"ETA {jobs.format_eta(job.eta_s)}")
    if st.button("Cancel", key="experiment.cancel", disabled=job.cancelled):
        job.cancel()


@st.cache_resource(max_entries=16, show_spinner="Evaluating both circuits and their intersection on both tasks…")
def cross_eval(model_name: str, ids: tuple[str, str], task_names: tuple[str, str], names: tuple[str, str],
               _a: Circuit, _b: Circuit) -> CrossEval:
    from engine.experiment import cross_evaluate  # noqa: PLC0415

    ta, tb = (resources.get_task(model_name, t) for t in task_names)
    return cross_evaluate(resources.get_model(model_name), _a, _b, ta, tb, names)


def matrix_rows(ev: CrossEval) -> list[dict]:
    """Rows a, b, intersection, full model: accuracy and task metric on each task (test split)."""
    labels = {"a": ev.names[0], "b": ev.names[1], "intersection": "intersection", "full model": "full model"}
    rows = []
    for key, label in labels.items():
        row: dict[str, Any] = {"circuit": label}
        for t in ev.tasks:
            r = ev.results[key][t]
            row[f"{t} · accuracy"] = r.accuracy
            row[f"{t} · {r.metric_name}"] = r.metric
        rows.append(row)
    return rows


def verdict(o: Any, shares: dict[str, float | None]) -> str:
    """The paper's finding, stated for these two circuits: far above chance and most performance kept?"""
    known = [v for v in shares.values() if v is not None]
    above = o.expected > 0 and o.ratio >= 2 and o.p_value < 0.01
    keeps = bool(known) and min(known) >= 0.8
    what = (f"The two circuits share **{o.shared}** edges, {o.ratio:.1f}x the {o.expected:.1f} expected by chance "
            f"(p = {o.p_value:.2g})" if o.expected > 0 else f"The two circuits share {o.shared} edges")
    kept = ", ".join(f"{k}: {'n/a' if v is None else f'{v:.0%}'}" for k, v in shares.items())
    if above and keeps:
        return f"{what}, and the intersection keeps most of each circuit's performance ({kept}): **the paper's finding holds here.**"
    why = [] if above else ["the overlap is not clearly above chance"]
    why += [] if keeps else ["the intersection keeps less than 80% of a circuit's performance"]
    return f"{what}; intersection: {kept}. **The paper's finding does not hold here:** {' and '.join(why)}."
