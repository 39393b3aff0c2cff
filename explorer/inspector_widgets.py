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
