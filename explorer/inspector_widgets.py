"""Streamlit blocks of the node inspector: pick or search a node, its edges with scores, focus and pin."""

from __future__ import annotations

from typing import TYPE_CHECKING

import streamlit as st

from . import inspector, layout, state

if TYPE_CHECKING:
    from engine import Circuit, EdgeGraph

NONE = "(none)"


def node_picker(graph: EdgeGraph) -> str | None:
    """The selected node: this selectbox and a click in the graph set the same state (type to search)."""
    options = [NONE, *graph.nodes]
    if st.session_state.get(state.HIGHLIGHT) not in options:
        st.session_state[state.HIGHLIGHT] = NONE
    node = st.selectbox("Selected node (click one in the graph, or type to search)", options, key=state.HIGHLIGHT,
                        format_func=lambda n: n if n == NONE else layout.node_label(n))
    return None if node == NONE else node


def node_panel(shown: Circuit, node: str | None) -> dict:
    """Incoming/outgoing edges of `node` in the shown selection (sortable tables), Focus and Pin.

    Returns:
        The view keys the graph applies: {"focus": {"node", "k"} | None, "pinned": [nodes]}.
    """
    pinned: list[str] = st.session_state.setdefault(state.PINNED, [])
    focus = st.session_state.get(state.FOCUS)
    if node is None:
        st.caption("Click a node in the graph to see what feeds it and what it feeds.")
        return {"focus": focus, "pinned": pinned}
    st.markdown(f"**{layout.node_label(node)}**")
    st.caption(layout.node_title(node))
    incoming, outgoing = inspector.node_edges(shown, node)
    if not incoming and not outgoing:
        st.info(f"{layout.node_label(node)} has no edge in the shown selection, so the graph does not show it.")
    tabs = st.tabs([f"Incoming ({len(incoming)})", f"Outgoing ({len(outgoing)})"])
    for tab, rows, who in zip(tabs, (incoming, outgoing), ("from", "to")):
        with tab:
            if rows:  # click a column header to sort
                st.dataframe([{who: r[who], "input": r["input"], "score": round(r["score"], 4)} for r in rows],
                             hide_index=True, height=min(36 * (len(rows) + 1) + 4, 260))
    k = st.number_input("Focus: hops around it", 1, 6, 1, key="circuit.focus_k")
    c = st.columns(2)
    if c[0].button("Focus", key="circuit.focus_on", help="Show only the nodes within this many edges of it."):
        focus = {"node": node, "k": int(k)}
    if c[1].button("Unpin" if node in pinned else "Pin", key="circuit.pin",
                   help="A pinned node stays drawn (dashed border) at any threshold."):
        pinned = [n for n in pinned if n != node] if node in pinned else [*pinned, node]
    st.session_state[state.PINNED] = pinned
    st.session_state[state.FOCUS] = focus
    if focus is not None:
        n = len(inspector.neighbourhood(shown, focus["node"], focus["k"]))
        st.caption(f"Focused on {layout.node_label(focus['node'])}: {n} node(s) within {focus['k']} hop(s).")
        if st.button("Show the whole graph", key="circuit.focus_off"):
            focus = None
            st.session_state[state.FOCUS] = None
    return {"focus": focus, "pinned": pinned}


# ---- one prompt: per-prompt edge effects, a head's attention, a node's direct effect ----
TYPED = "type a prompt pair…"


def prompt_controls(model_name: str, task_name: str) -> tuple[object, object] | None:
    """Pick a task example (or type a pair). Returns (model, PromptPair), or None with a message."""
    from . import prompt_probe, resources  # noqa: PLC0415 - torch loads after the first render

    try:
        model = resources.get_model(model_name)
        task = resources.get_task(model_name, task_name)
    except Exception as e:  # unknown or unloadable model: explain, keep the rest of the page
        st.info(f"Prompt views need the circuit's model **{model_name or '?'}** and task {task_name!r}: {e}")
        return None
    examples = task.split("test").examples[:30]
    labels = [ex.clean for ex in examples] + ([TYPED] if model.tokenizer is not None else [])
    if not labels:
        st.info("This task has no examples to show.")
        return None
    pick = st.selectbox(f"Prompt ({task_name} test example, or your own)", range(len(labels)),
                        format_func=lambda i: labels[i], key="circuit.prompt")
    if labels[pick] != TYPED:
        try:
            return model, prompt_probe.from_task(model, task, pick)
        except ValueError as e:  # e.g. a Tracr program with one numeric output
            st.info(f"Prompt views are not available for this model: {e}")
            return None
    try:
        c = st.columns(2)
        clean = c[0].text_input("Prompt", examples[0].clean if examples else "", key="circuit.typed_clean")
        corrupt = c[1].text_input("Corrupted twin (same length)", examples[0].corrupt if examples else "",
                                  key="circuit.typed_corrupt")
        answer = c[0].text_input("Answer", examples[0].answer if examples else "", key="circuit.typed_answer")
        other = c[1].text_input("Compared with (optional)", "", key="circuit.typed_other")
        return model, prompt_probe.typed(model, clean, corrupt, answer, other)
    except ValueError as e:
        st.error(f"Cannot use this prompt pair: {e}")
        return None


@st.cache_data(max_entries=32, show_spinner="Measuring each edge on this prompt…")
def _edge_effects(key: str, _model: object, _pair: object, _circuit: Circuit) -> tuple[dict[str, float], str]:
    from . import prompt_probe  # noqa: PLC0415

    return prompt_probe.edge_effects(_model, _pair, _circuit)


def edge_effects(model: object, pair: object, shown: Circuit) -> dict[str, float] | None:
    """Optionally weight the graph's edges by their effect on this prompt; lists the top edges."""
    from . import prompt_probe  # noqa: PLC0415

    if not st.checkbox("Draw edges by their effect on this prompt", False, key="circuit.effects",
                       help="Blue: the edge pushes the answer up; orange: down. Width: how much."):
        return None
    if shown.n_edges == 0:
        st.caption("No edge is shown.")
        return None
    key = f"{id(model)}:{pair.clean.tolist()}:{pair.corrupt.tolist()}:{pair.answer}:{pair.other}:{shown.circuit_id}"
    effects, how = _edge_effects(key, model, pair, shown)
    st.caption(("Exact: the circuit's logit difference minus that without the edge (one run per edge)."
                if how == "exact" else f"Attribution: the gradient of the logit difference by the edge's gate "
                f"(more than {prompt_probe.EXACT_MAX_EDGES} edges: exact removal would take one run per edge)."))
    top = sorted(effects.items(), key=lambda kv: -abs(kv[1]))[:10]
    st.dataframe([{"edge": e, "effect": round(v, 4)} for e, v in top], hide_index=True)
    return effects


def node_effects(model: object, pair: object, shown: Circuit, node: str) -> None:
    """A head's attention pattern (model and circuit side by side) and the node's direct effect on the answer."""
    from . import prompt_probe  # noqa: PLC0415

    if node in ("input", "tok", "pos", "logits") or ".kv" in node:
        return
    p = prompt_probe.probe(model, pair, shown)
    a, o = prompt_probe.token_text(model, pair.answer), prompt_probe.token_text(model, pair.other)
    full, circ = prompt_probe.direct_effect(model, p, pair, node)
    st.markdown(f"**Direct effect of {layout.node_label(node)}** on logit({a!r}) − logit({o!r}), through the "
                f"final norm and unembedding (other token: {pair.what})")
    c = st.columns(2)
    c[0].metric("full model", f"{full:+.3f}")
    c[1].metric("circuit", f"{circ:+.3f}")
    if ".h" in node:
        layer, head = int(node[1:].split(".")[0]), int(node.split(".h")[1])
        rows = prompt_probe.attention(p, layer, head, pair)
        st.vega_lite_chart({"data": {"values": rows}, "mark": "rect",
                            "encoding": {"x": {"field": "key", "type": "ordinal", "sort": None, "title": "key token"},
                                         "y": {"field": "query", "type": "ordinal", "sort": None, "title": "query token"},
                                         "color": {"field": "weight", "type": "quantitative",
                                                   "scale": {"domain": [0, 1], "scheme": "blues"}},
                                         "column": {"field": "model", "type": "nominal", "title": None,
                                                    "sort": ["full model", "circuit"]},
                                         "tooltip": [{"field": "query"}, {"field": "key"},
                                                     {"field": "weight", "format": ".3f"}]}})
        st.caption(f"Attention of {node} on this prompt (rows: the attending token; columns: the attended one).")
