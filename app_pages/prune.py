"""Prune page: model + task + hyper-parameters; a background run with live curves and cancel."""

import streamlit as st

from explorer import jobs, prune_widgets, resources, state, widgets
from explorer.text import bold, literal

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

sess = state.session()
job = sess.job
running = job is not None and job.running
with head:
    model = widgets.require_model(model_name)
    g = model.graph
    st.markdown(f"{bold(model_name)} · {g.n_layers} layers × {g.n_heads} heads · **{g.n_edges:,} edges** · "
                f"device `{model.device}`")
    if running:
        st.info(f"Pruning {bold(job.label)} in the background — you can use the other pages meanwhile.")
        prune_widgets.prune_progress()
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
        sess.job = prune_widgets.start_prune(model, task, cfg, model_name, budget)
        st.rerun()

if job is not None and job.done:
    st.subheader(f"Last run: {literal(job.label)}")
    if job.error:
        st.error(f"The run failed: {literal(job.error)}")
    elif job.result is not None:
        circuit, log = job.result
        for w in log.warnings:
            st.warning(literal(w))
        how = "stopped early" if log.stopped_early else "finished"
        st.success(f"Run {how} after {len(log.steps)} steps in {jobs.format_eta(log.elapsed_s)}: "
                   f"**{circuit.n_edges:,} edges** kept ({circuit.sparsity:.2%} sparsity).")
        prune_widgets.run_outcome(job, circuit)
        if job.saved is not None:
            sess.circuit_name = f"lib:{job.saved.name}"
            st.write(f"Saved to the library as {bold(job.saved.name)} ({literal(job.saved.path)}).")
        else:
            sess.unsaved[job.label] = circuit
            sess.circuit_name = f"new:{job.label}"
            if st.button("Save this result to the library"):
                entry = resources.library().save(circuit, job.label, {"stopped_early": True})
                sess.unsaved.pop(job.label, None)
                sess.circuit_name = f"lib:{entry.name}"
                st.success(f"Saved as {bold(entry.name)}.")
        st.page_link("app_pages/circuit.py", label="Open it in the Circuit page", icon=":material/account_tree:")
        if log.steps:
            prune_widgets.prune_chart(log.steps, job.loss)
