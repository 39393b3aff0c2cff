"""Node names and head order for the layered circuit graph: `MLP L` labels, tooltips, fewer crossings (pure)."""

from __future__ import annotations

from collections.abc import Iterable

from engine.graph import EdgeGraph, dst_node


def node_label(node: str) -> str:
    """What a node is called on screen: `m3` -> `MLP 3`; heads, inputs and logits keep their ids."""
    if node.startswith("m") and node[1:].isdigit():
        return f"MLP {node[1:]}"
    return node


def node_title(node: str) -> str:
    """Tooltip text: what the node is, in words (no fractional layer numbers)."""
    if node in ("input", "tok", "pos"):
        return {"input": "input: token + position embeddings", "tok": "tok: token embeddings",
                "pos": "pos: position embeddings"}[node]
    if node == "logits":
        return "logits: final norm + unembedding (reads every writer)"
    if node.startswith("m") and node[1:].isdigit():
        return f"MLP {node[1:]}: the MLP of layer {node[1:]} (reads the heads of layer {node[1:]} and below)"
    layer, rest = node[1:].split(".", 1)
    if rest.startswith("kv"):
        return f"{node}: key/value head {rest[2:]} of layer {layer}"
    return f"{node}: attention head {rest[1:]} of layer {layer}"


def _slot(graph: EdgeGraph, node: str) -> tuple[float, int]:
    """(row, index within the row) before ordering; MLPs sit in their own column right of the heads."""
    row = graph.node_layer(node)
    if ".h" in node:
        return row, int(node.split(".h")[1])
    if ".kv" in node:
        return row, int(node.split(".kv")[1])
    if node.startswith("m") and node[1:].isdigit():
        return row, graph.n_heads
    return row, (graph.n_heads - 1) // 2


def head_order(graph: EdgeGraph, edges: Iterable[tuple[str, str]], sweeps: int = 4) -> dict[str, int]:
    """Order of the heads within each layer that reduces edge crossings (barycentre heuristic).

    Sugiyama-style layer sweeps: each head moves to the mean position of its neighbours in the layers
    below (upward sweep), then above (downward sweep). Heads with no edge keep their place relative to each other.

    Args:
        graph: the model's edge graph.
        edges: (writer, reader node) pairs to untangle, e.g. a circuit's kept edges.
        sweeps: up-and-down passes.

    Returns:
        node -> position in its row (0-based) for every head; other nodes are not ordered.
    """
    x = {n: float(_slot(graph, n)[1]) for n in graph.nodes}
    nbrs: dict[str, set[str]] = {n: set() for n in graph.nodes}
    for a, b in edges:
        a, b = dst_node(a), dst_node(b)
        if a != b and a in nbrs and b in nbrs:
            nbrs[a].add(b)
            nbrs[b].add(a)
    rows: dict[int, list[str]] = {}
    for n in graph.nodes:
        if ".h" in n:
            rows.setdefault(int(n[1:].split(".")[0]), []).append(n)
    layer = graph.node_layer
    for _ in range(sweeps):
        for direction in (1, -1):
            for L in sorted(rows, reverse=direction < 0):
                heads = rows[L]
                side = {h: [x[m] for m in nbrs[h] if (layer(m) - L) * direction < 0] for h in heads}
                key = {h: (sum(v) / len(v) if v else x[h]) for h, v in side.items()}
                for i, h in enumerate(sorted(heads, key=lambda h: (key[h], x[h]))):
                    x[h] = float(i)
    return {h: int(x[h]) for hs in rows.values() for h in hs}
