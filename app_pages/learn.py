"""Learn page: interchange ablation, hard-concrete gates, the sparsity schedule, pruning step by step."""

import pandas as pd
import streamlit as st

import engine
from explorer import charts, learn_widgets, lessons, resources, widgets
from explorer.text import bold, literal

widgets.require_frame()
st.title("Learn: how Edge Pruning finds a circuit")
model_name = learn_widgets.model_choice()
model = widgets.require_model(model_name)
task_name = resources.default_task(model_name)
try:
    task = resources.get_task(model_name, task_name)
except (KeyError, ValueError) as e:
    st.error(f"The teaching task {task_name} cannot be built for {bold(model_name)}: {literal(e)}")
    st.stop()
st.caption(f"Driven by the model {bold(model_name)} ({model.graph.n_edges:,} edges) on the task **{task.name}**.")

st.header("1 · Interchange ablation")
st.markdown("An edge *writer → reader* is **removed** by giving the reader the writer's output from a "
            "**corrupted** prompt instead of the clean one. Remove every edge and you get the corrupted run.")
data = task.split("test")
i = st.number_input("Example", 1, len(data), 1, key="learn.example") - 1
ex = data.examples[i]
st.code(f"clean:     {ex.clean}\ncorrupted: {ex.corrupt}\nanswer:    {ex.answer}", language=None)
n = int(data.positions[i, 0]) + 1
clean, corrupt = data.clean[i : i + 1, :n], data.corrupt[i : i + 1, :n]
choice = st.selectbox("Remove", lessons.ablation_choices(model.graph), key="learn.ablate")
keep = lessons.ablation_keep(model.graph, choice)
cols = st.columns(3)
runs = {"full model, clean prompt": engine.predict(model, clean, k=5),
        "full model, corrupted prompt": engine.predict(model, corrupt, k=5),
        f"clean, with {choice} removed": engine.predict(model, clean, keep, corrupt, k=5)}
for col, (title, (probs, ids)) in zip(cols, runs.items()):
    col.markdown(f"**{title}**")
    toks = [model.tokenizer.decode([int(t)]) for t in ids[0]]
    col.dataframe(pd.DataFrame({"token": toks, "p": probs[0].tolist()}), hide_index=True)

st.header("2 · Hard-concrete gates")
st.markdown("Each edge has a gate z in [0, 1] sampled from a *hard-concrete* distribution "
            "([Louizos et al. 2018](https://arxiv.org/abs/1712.01312)): it is exactly 0 or 1 with real "
            "probability, yet differentiable in its logit log α. Training pushes log α down for edges that "
            "are not needed.")
c1, c2 = st.columns([1, 2])
la = c1.slider("log α", -8.0, 8.0, 0.0, 0.25, key="learn.log_alpha")
beta = c1.slider("temperature β", 0.1, 1.5, 2 / 3, 0.05, key="learn.beta")
p_open, score = lessons.gate_stats(la, beta)
c1.metric("P(gate open) = expected L0", f"{p_open:.3f}")
c1.metric("Evaluation score sigmoid(1.2 log α)", f"{score:.3f}")
c2.plotly_chart(charts.hard_concrete(la, beta), config=charts.plotly_config())

st.header("3 · The sparsity schedule")
st.markdown("The target share of removed edges ramps up from 0 during a warm-up; Lagrange multipliers, "
            "trained by gradient *ascent*, make the expected sparsity follow it.")
learn_widgets.schedule_demo(model_name, task)

st.header("4 · Pruning step by step")
learn_widgets.stages(model_name, model, task)
