"""Compare page: two or more circuits in one graph, overlap vs chance, and a cross-evaluation matrix."""

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

st.subheader("One threshold for every circuit")
cut_mode = st.radio("Cut", overlap.CUT_MODES, horizontal=True, key="compare.cut",
                    help="As saved: each circuit's own selection. Edge count / sparsity: each circuit's best edges "
                         "by its own scores, the same number for all.")
total = next(iter(circuits.values())).graph.n_edges
value = None
if cut_mode == "edge count":
    smallest = min(c.n_edges for c in circuits.values()) or min(100, total)
    value = st.slider("Edges per circuit", 1, total, smallest, key="compare.cut_edges")
elif cut_mode == "sparsity":
    value = st.slider("Sparsity of every circuit", 0.0, 1.0, 0.95, 0.001, format="%.3f", key="compare.cut_sparsity")
shown = overlap.cut(circuits, cut_mode, value)
inter, union = overlap.combine(shown, "&"), overlap.combine(shown, "|")
counts = overlap.group_counts(shown)
c = st.columns(4)
c[0].metric("Union", f"{union.n_edges:,} edges")
c[1].metric("Intersection", f"{inter.n_edges:,} edges")
c[2].metric("Full graph", f"{union.graph.n_edges:,} edges")
c[3].metric("Jaccard", f"{inter.n_edges / union.n_edges:.2f}" if union.n_edges else "n/a")
if not union.n_edges:
    c[3].caption("n/a: no circuit has an edge at this threshold")

legend = graph_view.group_legend(names)
groups = list(graph_view.group_colors(names))
groups = ["shared", *[g for g in groups if g.startswith("only:")], *(["partial"] if len(names) > 2 else [])]
toggles = st.columns(len(groups))
show = [g for g, col, (label, _) in zip(groups, toggles, legend)
        if col.checkbox(f"{label} ({counts[g]:,})", True, key=f"compare.show.{groups.index(g)}")]
key = "-".join(sorted(x.circuit_id for x in shown.values()))
view = {"groups": show}
html = resources.compare_html(key, " vs ".join(names), shown, legend, view)
st.iframe(html, height=theme.graph_height(union.graph.n_layers) + theme.IFRAME_EXTRA_PX, alt="compare graph")
circuit_widgets.bridge({**view, "graph": f"cmp-{key}"}, f"bridge.cmp-{key}")

st.subheader("Overlap vs chance")
rows = [{"A": o.a, "B": o.b, "|A|": o.n_a, "|B|": o.n_b, "shared": o.shared,
         "share of smaller": o.share_of_smaller, "expected by chance": o.expected,
         "observed / expected": o.ratio, "p-value": f"{o.p_value:.3g}"}
        for o in overlap.pairwise(shown)]
st.dataframe(pd.DataFrame(rows), hide_index=True)
st.caption(f"For the circuits as cut above ({cut_mode}{'' if value is None else f' {value:,}'}). "
           "Expected = |A|·|B| / total edges if both were random sets of their sizes; "
           "p-value = P(shared ≥ observed) under that hypergeometric null.")
colors = graph_view.group_colors(names)
layer_rows = overlap.by_layer(shown)
if layer_rows:  # an empty stacked chart has no extent (a console warning) and says nothing
    st.vega_lite_chart(overlap.layer_chart_spec(layer_rows, {g: (lb, colors[g]) for g, (lb, _) in zip(groups, legend)}),
                       width="stretch")
else:
    st.caption("No edges at this cut: nothing to count by layer.")

b = st.columns(2)
if b[0].button("Save the intersection and open it", disabled=inter.n_edges == 0):
    circuit_widgets.save_and_open(inter, inter.meta["name"])
if b[1].button("Save the union and open it"):
    circuit_widgets.save_and_open(union, union.meta["name"])

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
