"""What the node inspector lists: a node's incoming and outgoing edges in a selection, its k-hop neighbourhood (pure)."""

from __future__ import annotations

from engine.circuit import Circuit
from engine.graph import dst_node

from .graph_view import edge_kind
from .layout import node_label


def node_edges(selection: Circuit, node: str) -> tuple[list[dict], list[dict]]:
    """The selection's edges into and out of `node`, best score first.

    Returns:
        (incoming, outgoing): rows {"from" | "to": node label, "input": q/k/v/other, "score": float, "edge": id}.
    """
    g = selection.graph
    incoming, outgoing = [], []
    for i, j in selection.keep.nonzero().tolist():
        src, reader = g.src_names[i], g.dst_names[j]
        row = {"input": edge_kind(reader), "score": float(selection.scores[i, j]), "edge": f"{src}->{reader}"}
        if dst_node(reader) == node:
            incoming.append({"from": node_label(src), **row})
        if src == node:
            outgoing.append({"to": node_label(dst_node(reader)), **row})
    key = lambda r: -r["score"]  # noqa: E731
    return sorted(incoming, key=key), sorted(outgoing, key=key)


def neighbourhood(selection: Circuit, node: str, k: int) -> set[str]:
    """Nodes within `k` edges of `node` in the selection, edges taken in either direction (what Focus shows)."""
    g = selection.graph
    adj: dict[str, set[str]] = {}
    for i, j in selection.keep.nonzero().tolist():
        a, b = g.src_names[i], dst_node(g.dst_names[j])
        adj.setdefault(a, set()).add(b)
        adj.setdefault(b, set()).add(a)
    seen, frontier = {node}, {node}
    for _ in range(k):
        frontier = {m for n in frontier for m in adj.get(n, ())} - seen
        seen |= frontier
    return seen
