"""Experiment page: the paper's instruction vs few-shot comparison (or any two tasks of one model) in one flow."""

import pandas as pd
import streamlit as st

from explorer import experiment_widgets as ew
from explorer import graph_view, overlap, prune_widgets, resources, theme, widgets

widgets.require_frame()
st.title("Experiment: two prompt styles, one model")
st.caption("Find the circuit behind each prompt style (e.g. instruction vs few-shot Boolean expressions), "
           "intersect them, and test what each circuit and the intersection still do on both styles.")

model_name = widgets.selected_model()
tasks = resources.task_names(model_name)
if len(tasks) < 2:
    st.info(f"**{model_name}** has one task only ({', '.join(tasks)}); choose a language model in the sidebar.")
    st.stop()
da, db = ew.default_pair(model_name, tasks)
c1, c2 = st.columns(2)
ta = c1.selectbox("Task A", tasks, index=tasks.index(da), key="experiment.task_a")
tb = c2.selectbox("Task B", tasks, index=tasks.index(db), key="experiment.task_b")
if ta == tb:
    st.warning("Choose two different tasks.")
    st.stop()
source = st.radio("Circuits", ["Prune both with the faithful defaults", "Use circuits from the library"],
                  horizontal=True, key="experiment.source",
                  help="The defaults: the sparsest circuit found that keeps 90% of the task metric on validation "
                       "(300 + up to 3 x 100 steps per task; on boolean-4l about 30 s + 60 s on 2 cores; "
                       "assets/MODELS.md has the sweep).")
model = widgets.require_model(model_name)
job = ew.current_job()
a = b = None
if source.startswith("Prune"):
    running = job is not None and job.running
    budget = prune_widgets.budget_fields(model_name, key="experiment")
    if st.button("Prune both", type="primary", key="experiment.run", disabled=running or budget is None):
        job = ew.start_both(model, model_name, (ta, tb), budget)
        st.rerun()
    if running:
        ew.job_progress()   # reruns the page once the run ends
    if job is not None and job.done:
        if job.error:
            st.error(f"The run failed: {job.error}")
        elif job.result is not None and len(job.result[0]) == 2:
            a, b = job.result[0]
            for log in job.result[1]:
                for w in log.warnings:
                    st.warning(w)
            if job.saved:
                st.caption("Saved to the library as " + ", ".join(f"**{e.name}**" for e in job.saved) + ".")
        else:
            st.info("The run was cancelled before both circuits were found.")
else:
    p1, p2 = st.columns(2)
    with p1:
        a = ew.pick_circuit(model_name, ta, "experiment.circuit_a")
    with p2:
        b = ew.pick_circuit(model_name, tb, "experiment.circuit_b")
if a is None or b is None:
    st.stop()
if not (a.graph.same_as(model.graph) and b.graph.same_as(model.graph)):
    st.error(f"Both circuits must come from **{model_name}** (the model in the sidebar).")
    st.stop()

name_a, name_b = f"A ({ta})", f"B ({tb})"
pair = {name_a: a, name_b: b}
key = f"{a.circuit_id}-{b.circuit_id}"
st.subheader("Both circuits and their intersection")
html = resources.compare_html(key, f"{ta} vs {tb}", pair, graph_view.group_legend(list(pair)))
st.iframe(html, height=theme.GRAPH_HEIGHT_PX + theme.IFRAME_EXTRA_PX, alt="experiment graph")

o = overlap.pairwise(pair)[0]
m = st.columns(4)
m[0].metric("Edges in A / B", f"{o.n_a} / {o.n_b}")
m[1].metric("Shared edges", f"{o.shared}", help=f"of {o.total} edges in the model's graph")
m[2].metric("Shared / expected by chance", "n/a" if o.expected == 0 else f"{o.ratio:.1f}x",
            help=f"chance: |A|·|B| / {o.total} = {o.expected:.2f} shared edges")
m[3].metric("p-value (hypergeometric)", f"{o.p_value:.3g}", help="P(shared >= observed) for random circuits "
            "of these sizes")

ev = ew.cross_eval(model_name, (a.circuit_id, b.circuit_id), (ta, tb), (name_a, name_b), a, b)
st.subheader("Each circuit on both styles (test split)")
st.dataframe(pd.DataFrame(ew.matrix_rows(ev)).set_index("circuit").style.format("{:.3f}"))
n_test = ev.results["a"][ev.tasks[0]].n_examples
shares = ev.intersection_shares()
s = st.columns(2)
for col, (name, share) in zip(s, shares.items()):
    col.metric(f"Intersection's share of {name}'s task metric",
               "n/a" if share is None else f"{share:.0%}",
               help="metric(intersection) / metric(circuit) on the circuit's own task; n/a when the circuit's "
                    f"metric is not positive. {n_test} test prompts.")
st.markdown(ew.verdict(o, shares))
