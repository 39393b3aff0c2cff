"""Prune page: model + task + hyper-parameters; background runs with live curves and cancel, and the Runs list."""

import streamlit as st

from explorer import prune_widgets, run_widgets, widgets
from explorer.text import bold

widgets.require_frame()
st.title("Prune: find a circuit with Edge Pruning")
st.caption("Learns a gate per edge so the circuit's output stays close to the full model's (KL) while a "
           "growing share of edges is removed. The result is saved to the circuit library.")

model_name = widgets.selected_model()
head = st.container()  # model, run status and task: filled below, once the model (and torch) have loaded
with st.container(border=True):  # drawn first, so the page is usable while the model loads
    budget = prune_widgets.budget_choice(model_name)
    cfg = prune_widgets.prune_form(model_name)
    estimate = st.empty()
    pressed = st.button("Prune", type="primary", key="prune.run")

running = run_widgets.followed(running=True)  # this browser's runs, found again after a reload
with head:
    model = widgets.require_model(model_name)
    g = model.graph
    st.markdown(f"{bold(model_name)} · {g.n_layers} layers × {g.n_heads} heads · **{g.n_edges:,} edges** · "
                f"device `{model.device}`")
    for record in running:
        run_widgets.live_progress(record["id"])
    task = widgets.task_picker(model_name, "prune")
    if task is not None:
        sizes = {k: len(v) for k, v in task.splits.items()}
        st.caption(f"Task {bold(task.name)} · metric {task.metric} · examples {sizes}")
if cfg is not None and task is not None:
    prune_widgets.memory_estimate(estimate, model, task, cfg)
if pressed:
    if running:
        st.error("A run is already in progress: cancel it or wait for it to finish.")
    elif task is None:
        st.error("Choose a task (or fix the uploaded data) first.")
    elif cfg is not None:
        run_widgets.start(model, task, cfg, model_name, budget)
        st.rerun()

run_widgets.last_result()
run_widgets.runs_list()
