"""Circuit page: the layered graph with a fast threshold, stats, faithfulness, exports."""

import streamlit as st

import engine
from explorer import charts, graph_view, resources, state, widgets

st.title("Circuit")
circuit = widgets.circuit_picker()
widgets.circuit_upload("circuit.upload")
if circuit is None:
    st.stop()
meta = circuit.meta
name = meta.get("name", "circuit")
st.caption(f"model **{resources.model_key(meta.get('model', '?'))}** · task **{meta.get('task', '?')}** · method {meta.get('method', '?')} · "
           f"{circuit.graph.n_edges:,} edges in the full graph · saved cut: {circuit.n_edges:,} edges")


@st.fragment
def explorer_view() -> None:
    left, right = st.columns([3, 1])
    with right:
        selection, t = widgets.threshold_control(circuit)
        hide = st.checkbox("Hide dangling edges", False, key=state.HIDE_DANGLING,
                           help="Edges with no path from the input or none to the logits.")
        nodes = ["(none)"] + list(circuit.graph.nodes)
        hl = st.selectbox("Highlight a node's inputs and outputs", nodes, key=state.HIGHLIGHT)
        shown = selection.prune_dangling() if hide else selection
        s = graph_view.stats(selection)
        st.metric("Edges", f"{shown.n_edges:,}", help=f"{s['dangling']} of the selected edges are dangling")
        st.caption(f"{s['dangling']} dangling edge(s) in this selection" + (" (hidden)" if hide else ""))
        st.metric("Nodes", len(shown.nodes()))
        st.metric("Sparsity", f"{shown.sparsity:.2%}")
    with left:
        drop = graph_view.dropped_edges(selection) if hide else []
        widgets.live_graph(circuit, t, selection.n_edges, drop, None if hl == "(none)" else hl, name)
    faithfulness(shown, t)
    with st.expander("Export"):
        widgets.downloads(circuit, shown, t, name, f"{name}-{shown.n_edges}e")


def faithfulness(selection: engine.Circuit, t: float) -> None:
    st.subheader("Faithfulness at this threshold")
    model_name = resources.model_key(meta.get("model", ""))
    tasks = list(engine.TASKS)
    task_name = meta.get("task") if meta.get("task") in tasks else resources.default_task(model_name)
    task_name = st.selectbox("Evaluated on", tasks, index=tasks.index(task_name), key="circuit.eval_task")
    try:
        model = resources.get_model(model_name)
        if not model.graph.same_as(circuit.graph):
            raise ValueError(f"its graph does not match this circuit's ({model.graph.to_dict()})")
        task = resources.get_task(model_name, task_name)
    except Exception as e:  # unknown or unloadable model: explain, keep the rest of the page
        st.info(f"Faithfulness needs the circuit's model **{model_name or '?'}**, which cannot be used here: {e}")
        return
    key = resources.task_key(task)
    result = resources.evaluate(model_name, key, selection.circuit_id, task, selection)
    widgets.show_eval(result)
    grid = (0.0, 0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999)
    points = resources.faithfulness(model_name, key, circuit.circuit_id, grid, task, circuit)
    full = resources.evaluate(model_name, key, "full", task, engine.Circuit.full(circuit.graph))
    fmt = st.radio("Chart download format", ["png", "svg"], horizontal=True, key="circuit.fmt")
    st.plotly_chart(charts.faithfulness_curve(points, result, full), config=charts.plotly_config(fmt))
    real = circuit.scores[circuit.graph.real_edges].tolist()
    st.plotly_chart(charts.score_histogram(real, t), config=charts.plotly_config(fmt))


explorer_view()
