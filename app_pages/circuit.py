"""Circuit page: the layered graph with a fast threshold, stats, faithfulness, exports."""

import streamlit as st

from explorer import charts, circuit_widgets, eval_widgets, graph_view, inspector_widgets, resources, state, widgets
from explorer.text import bold, literal

SIZES = (0.0, 0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999)  # sparsities of the faithfulness curve

widgets.require_frame()
st.title("Circuit")
circuit = circuit_widgets.circuit_picker()
circuit_widgets.circuit_upload("circuit.upload")
if circuit is None:
    st.stop()
meta = circuit.meta
name = meta.get("name", "circuit")
model_name = resources.model_key(meta.get("model", ""))
st.caption(f"model {bold(model_name or '?')} · task {bold(meta.get('task', '?'))} · method {literal(meta.get('method', '?'))} · "
           f"{circuit.graph.n_edges:,} edges in the full graph · saved cut: {circuit.n_edges:,} edges")
if meta.get("definition"):   # which definition of the method (and recipe, graph) made it; shown literally
    st.text(meta["definition"])
sess = state.session()
task_name = meta.get("task") if meta.get("task") in resources.task_names(model_name) else resources.default_task(model_name)
real_scores = circuit.scores[circuit.graph.real_edges].tolist()


@st.fragment
def explorer_view() -> None:
    """Threshold, graph, stats and the node inspector; reruns alone when a control moves or a node is clicked
    (the graph only gets a message)."""
    left, right = st.columns([3, 1])
    with right:
        selection, view = circuit_widgets.threshold_control(circuit)
        hide = st.checkbox("Hide dangling edges", False, key=state.HIDE_DANGLING,
                           help="Edges with no path from the input or none to the logits.")
        shown = selection.prune_dangling() if hide else selection
        st.metric("Edges", f"{shown.n_edges:,}")
        st.caption(f"{len(shown.nodes())} nodes · sparsity {shown.sparsity:.2%} · "
                   f"{selection.n_edges - selection.prune_dangling().n_edges} dangling edge(s) in this selection"
                   + (" (hidden)" if hide else ""))
        node = inspector_widgets.node_picker(circuit.graph)
        extra = inspector_widgets.node_panel(shown, node)
        with st.expander("On one prompt", expanded=bool(state.get("circuit.effects"))):
            probe = inspector_widgets.prompt_controls(model_name, task_name)
            if probe is not None:
                extra["effects"] = inspector_widgets.edge_effects(*probe, shown)
    with left:
        drop = graph_view.dropped_edges(selection) if hide else []
        view = {**view, "drop": drop, "highlight": node, **extra}
        circuit_widgets.live_graph(circuit, view, selection.n_edges, name, state.HIGHLIGHT)
    sess.shown = shown
    sess.shown_threshold = view["threshold"] if view["threshold"] is not None else graph_view.view_threshold(
        selection, float(circuit.scores.max()))
    if node is not None and probe is not None:
        inspector_widgets.node_effects(*probe, shown, node)
    with st.expander("Export (as shown)"):
        circuit_widgets.downloads(circuit, shown, view, name, f"{name}-{shown.n_edges}e")


@st.fragment(run_every=1.0)
def faithfulness_view() -> None:
    """Measured on a worker thread; this block polls, so moving the threshold never waits for it."""
    st.subheader("Faithfulness at this threshold")
    task_name = eval_widgets.circuit_task(circuit, model_name, "circuit.eval_task")
    try:
        model = resources.get_model(model_name, circuit.graph.split_embeddings)
        if not model.graph.same_as(circuit.graph):
            raise ValueError(f"its graph does not match this circuit's ({model.graph.to_dict()})")
        task = eval_widgets.load_task(model_name, task_name)
    except Exception as e:  # unknown or unloadable model, bad data: explain, keep the rest of the page
        st.info(f"Faithfulness needs the circuit's model {bold(model_name or '?')} and the task {bold(task_name)}, "
                f"which cannot be used here: {literal(e)}")
        return
    shown = sess.shown if sess.shown is not None and sess.shown.graph.same_as(circuit.graph) else circuit
    points = [widgets.await_result(resources.evaluate(model_name, task, circuit.with_sparsity(x)), "") for x in SIZES]
    # Measure a selection once it has stayed put for a tick, so a slider drag does not queue work.
    steady, sess.last_seen = shown.circuit_id == sess.last_seen, shown.circuit_id
    result = widgets.await_result(resources.evaluate(model_name, task, shown) if steady else ("pending", None),
                                  "Measuring this selection…")
    if result is not None:
        circuit_widgets.show_eval(result)
    done = [p for p in points if p is not None]
    if done:  # the chart's ⋯ menu saves PNG or SVG
        full = result.full_metric if result is not None else done[0].full_metric
        st.vega_lite_chart(charts.faithfulness_spec(done, result, full), width="content")  # "stretch" = autosize
        # "fit", which Vega-Lite cannot apply to two concatenated panels (a console warning)
    if len(done) < len(points):
        st.caption(f":material/hourglass_top: Faithfulness curve: {len(done)} of {len(points)} sizes measured…")
    st.vega_lite_chart(charts.histogram_spec(real_scores, sess.shown_threshold), width="stretch", height=240)


explorer_view()
faithfulness_view()
