"""Compare page: two or more circuits in one graph, overlap vs chance, and a cross-evaluation matrix."""

from functools import reduce

import pandas as pd
import streamlit as st

import engine
from explorer import circuit_widgets, eval_widgets, graph_view, overlap, resources, theme, widgets
from explorer.text import bold, literal

widgets.require_frame()
st.title("Compare circuits")
st.caption("E.g. the Boolean Expressions circuits found with instruction prompts and with few-shot prompts.")
circuits = circuit_widgets.circuits_picker()
circuit_widgets.circuit_upload("compare.upload")
if len(circuits) < 2:
    st.info("Choose at least two circuits of the same model.")
    st.stop()
names = list(circuits)
graphs = {repr(c.graph.to_dict()) for c in circuits.values()}
hashes = {c.meta.get("config_hash") for c in circuits.values()} - {None, ""}
models = {resources.model_key(c.meta.get("model", "")) for c in circuits.values()} - {""}
if len(graphs) > 1 or len(hashes) > 1 or len(models) > 1:
    st.error(f"These circuits come from different models ({literal(', '.join(sorted(models)) or 'different graphs')}); "
             "compare circuits of one model.")
    st.stop()

inter = reduce(lambda a, b: a & b, circuits.values())
union = reduce(lambda a, b: a | b, circuits.values())
c = st.columns(4)
c[0].metric("Union", f"{union.n_edges:,} edges")
c[1].metric("Intersection", f"{inter.n_edges:,} edges")
c[2].metric("Full graph", f"{union.graph.n_edges:,} edges")
c[3].metric("Jaccard", f"{inter.n_edges / max(union.n_edges, 1):.2f}")

key = "-".join(sorted(x.circuit_id for x in circuits.values()))
legend = graph_view.group_legend(names)
html = resources.compare_html(key, " vs ".join(names), circuits, legend)
st.iframe(html, height=theme.GRAPH_HEIGHT_PX + theme.IFRAME_EXTRA_PX, alt="compare graph")

st.subheader("Overlap vs chance")
rows = [{"A": o.a, "B": o.b, "|A|": o.n_a, "|B|": o.n_b, "shared": o.shared,
         "share of smaller": o.share_of_smaller, "expected by chance": o.expected,
         "observed / expected": o.ratio, "p-value": f"{o.p_value:.3g}"}
        for o in overlap.pairwise(circuits)]
st.dataframe(pd.DataFrame(rows), hide_index=True)
st.caption("Expected = |A|·|B| / total edges if both were random sets of their sizes; "
           "p-value = P(shared ≥ observed) under that hypergeometric null.")

b = st.columns(2)
if b[0].button("Save the intersection and open it", disabled=inter.n_edges == 0):
    circuit_widgets.save_and_open(inter, "intersection-" + "-".join(names))
if b[1].button("Save the union and open it"):
    circuit_widgets.save_and_open(union, "union-" + "-".join(names))

st.subheader("Evaluation matrix")
model_name = resources.model_key(next(iter(circuits.values())).meta.get("model", ""))
picked = eval_widgets.compare_tasks(circuits, model_name, "compare.tasks")
try:
    resources.get_model(model_name)
except Exception as e:  # circuits whose model is unavailable can still be compared, not evaluated
    st.info(f"Evaluation needs the model {bold(model_name)}: {literal(e)}")
    st.stop()
rows_c = {**circuits, "intersection": inter, "full model": engine.Circuit.full(union.graph)}


@st.fragment(run_every=1.5)
def evaluation_matrix() -> None:
    """Cells fill in as the worker thread measures them (accuracy and the task metric)."""
    table, waiting = {rname: {} for rname in rows_c}, 0
    for t in picked:
        try:
            task = eval_widgets.load_task(model_name, t)
        except (KeyError, ValueError) as e:
            st.warning(f"{literal(t)}: {literal(e)}")
            continue
        for rname, circ in rows_c.items():
            r = widgets.await_result(resources.evaluate(model_name, task, circ), "")
            waiting += r is None
            table[rname][f"{t} · accuracy"] = float("nan") if r is None else r.accuracy  # NaN shows as "…"
            table[rname][f"{t} · {task.metric}"] = float("nan") if r is None else r.metric
    if waiting:
        st.caption(f":material/hourglass_top: {waiting} evaluation(s) running…")
    if picked:
        st.dataframe(pd.DataFrame(table).T.style.format("{:.3f}", na_rep="…"))


evaluation_matrix()
