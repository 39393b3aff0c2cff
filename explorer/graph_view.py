"""Circuit -> networkx graph with layer/kind attributes and fixed layered positions (pure)."""

from __future__ import annotations

from collections.abc import Mapping

import networkx as nx
import torch

from engine.circuit import Circuit
from engine.graph import EdgeGraph, dst_node

from . import layout, theme


def node_kind(node: str) -> str:
    """`input`/`tok`/`pos` -> input, `a1.h2` -> attn, `a1.kv0` -> kv, `m1` -> mlp, `logits` -> logits."""
    if node in ("input", "tok", "pos"):
        return "input"
    if node == "logits":
        return "logits"
    if node.startswith("m"):
        return "mlp"
    return "kv" if ".kv" in node else "attn"


def edge_kind(reader: str) -> str:
    """What a reader is: `a3.h7<k>` -> 'k'; MLP and logits readers -> 'other'."""
    return reader[-2] if reader.endswith(">") else "other"


def positions(graph: EdgeGraph, order: Mapping[str, int] | None = None) -> dict[str, tuple[float, float]]:
    """Layered layout: inputs at the bottom, a row per layer (heads side by side in `order`, MLP in its own
    column half a row up), logits on top. The browser re-spaces the shown nodes; this is the starting point.

    Returns vis-network coordinates (y grows downwards, so higher layers get smaller y).
    """
    order = order or {}
    pos: dict[str, tuple[float, float]] = {}
    # Heads spread out until the drawing is about GRAPH_ASPECT wide per unit of height: the view is fitted to
    # the canvas, so a deep, narrow model drawn at X_STEP would fill a strip in the middle of a wide frame.
    width = max(graph.n_heads - 0.25, 0.75)  # leftmost head to the MLP, in head steps
    aimed = theme.GRAPH_ASPECT * (graph.n_layers + 1) * theme.Y_STEP / width
    x_step = min(3 * theme.X_STEP, max(theme.X_STEP, aimed))
    inputs = graph.input_nodes
    for i, n in enumerate(inputs):
        pos[n] = ((i - (len(inputs) - 1) / 2) * x_step, -graph.node_layer(n) * theme.Y_STEP)
    for n in graph.nodes:
        if n in pos:
            continue
        row = graph.node_layer(n)
        kind = node_kind(n)
        if kind == "attn":
            h = order.get(n, int(n.split(".h")[1]))
            x = (h - (graph.n_heads - 1) / 2) * x_step
        elif kind == "kv":
            g = int(n.split(".kv")[1])
            x = (g - (graph.kv_heads - 1) / 2) * x_step * graph.n_heads / graph.kv_heads
            row -= 0.3
        elif kind == "mlp":  # right of the heads, half a row up: head -> MLP edges stay visible
            x = ((graph.n_heads - 1) / 2 + 0.75) * x_step
        else:
            x = 0.0
        pos[n] = (x, -row * theme.Y_STEP)
    return pos


def _add_nodes(g: nx.MultiDiGraph, graph: EdgeGraph, active: set[str], keep: torch.Tensor) -> None:
    """Nodes with their label (`MLP L`), tooltip, row, and head order untangling the `keep` edges."""
    src, dst = keep.nonzero(as_tuple=True)
    pairs = [(graph.src_names[i], graph.dst_names[j]) for i, j in zip(src.tolist(), dst.tolist())]
    order = layout.head_order(graph, pairs)
    pos = positions(graph, order)
    for n in graph.nodes:
        x, y = pos[n]
        g.add_node(n, layer=graph.node_layer(n), kind=node_kind(n), x=x, y=y, active=n in active,
                   label=layout.node_label(n), title=layout.node_title(n), order=order.get(n, -1))


def to_nx(circuit: Circuit, include: str = "kept", max_edges: int | None = None) -> nx.MultiDiGraph:
    """The circuit as a MultiDiGraph (q, k and v edges between the same pair are distinct edges).

    Args:
        circuit: the circuit to draw.
        include: "kept" = only the circuit's edges; "all" = every real edge, each with a `kept` flag,
            so a viewer can filter by score without a new graph.
        max_edges: with include="all", keep at most this many of the highest-scoring edges
            (the circuit's own edges are always included).

    Returns:
        Nodes carry `layer`, `kind`, `x`, `y`, `active`; edges (key = reader id) carry
        `id`, `score`, `kept`, `qkv`, `reader`.
    """
    if include not in ("kept", "all"):
        raise ValueError(f"include must be 'kept' or 'all', got {include!r}")
    graph = circuit.graph
    sel = circuit.keep.clone()
    if include == "all":
        sel = graph.real_edges.clone()
        if max_edges is not None and max_edges < graph.n_edges:
            ranked = circuit.scores.masked_fill(~graph.real_edges, float("-inf")).flatten()
            top = torch.zeros_like(ranked, dtype=torch.bool)
            top[torch.sort(ranked, descending=True, stable=True).indices[:max_edges]] = True
            sel = top.view_as(sel) | circuit.keep
    g = nx.MultiDiGraph(n_layers=graph.n_layers, n_heads=graph.n_heads)
    idx = sel.nonzero().tolist()
    active = set(circuit.nodes())
    _add_nodes(g, graph, active, _untangle_set(circuit))
    rank = ranks(circuit)
    for i, j in idx:
        src, reader = graph.src_names[i], graph.dst_names[j]
        g.add_edge(src, dst_node(reader), key=reader, id=f"{src}->{reader}", score=float(circuit.scores[i, j]),
                   rank=int(rank[i, j]), kept=bool(circuit.keep[i, j]), qkv=edge_kind(reader), reader=reader)
    return g


def _untangle_set(circuit: Circuit, n: int = 300) -> torch.Tensor:
    """The edges the head order is chosen for: the saved cut, or the best `n` edges when it is empty or huge."""
    if 0 < circuit.n_edges <= 2000:
        return circuit.keep
    return circuit.top_n(min(n, circuit.graph.n_edges)).keep


def ranks(circuit: Circuit) -> torch.Tensor:
    """long [n_src, n_dst]: each edge's place in Circuit.top_n's order (0 = best; ties by edge order).

    A viewer that shows the edges with rank < n shows exactly `circuit.top_n(n)`, ties included.
    """
    ranked = circuit.scores.masked_fill(~circuit.graph.real_edges, float("-inf")).flatten()
    order = torch.sort(ranked, descending=True, stable=True).indices
    out = torch.empty_like(order)
    out[order] = torch.arange(order.numel())
    return out.view_as(circuit.scores)


def compare_nx(circuits: Mapping[str, Circuit]) -> nx.MultiDiGraph:
    """Union of several circuits' edges; each edge's `members` lists the circuits holding it.

    `group` is "shared" (in every circuit), "only:<name>" (in exactly one), or "partial" (in some).
    """
    if len(circuits) < 2:
        raise ValueError("compare needs at least two circuits")
    names = list(circuits)
    graph = circuits[names[0]].graph
    hashes = {c.meta.get("config_hash") for c in circuits.values()} - {None, ""}
    if any(not c.graph.same_as(graph) for c in circuits.values()) or len(hashes) > 1:
        raise ValueError("circuits to compare must come from the same model (same graph and config hash)")
    union = torch.zeros_like(graph.real_edges)
    for c in circuits.values():
        union |= c.keep
    g = nx.MultiDiGraph(n_layers=graph.n_layers, n_heads=graph.n_heads, circuits=names)
    colors = group_colors(names)
    active = {n for c in circuits.values() for n in c.nodes()}
    _add_nodes(g, graph, active, union)
    for i, j in union.nonzero().tolist():
        src, reader = graph.src_names[i], graph.dst_names[j]
        members = [n for n in names if bool(circuits[n].keep[i, j])]
        group = "shared" if len(members) == len(names) else f"only:{members[0]}" if len(members) == 1 else "partial"
        g.add_edge(src, dst_node(reader), key=reader, id=f"{src}->{reader}", score=float(len(members)), kept=True,
                   qkv=edge_kind(reader), reader=reader, members=members, group=group, color=colors[group])
    return g


def group_colors(names: list[str]) -> dict[str, str]:
    """Compare-graph edge colour per group: shared, partial, and one per circuit for its unique edges."""
    out = {"shared": theme.SHARED_COLOR, "partial": theme.PARTIAL_COLOR}
    for i, n in enumerate(names):
        out[f"only:{n}"] = theme.GROUP_COLORS[i % len(theme.GROUP_COLORS)]
    return out


def group_legend(names: list[str]) -> list[tuple[str, str]]:
    """(label, colour) pairs for the compare graph's legend."""
    colors = group_colors(names)
    legend = [(f"shared by all {len(names)}" if len(names) > 2 else "shared", colors["shared"])]
    legend += [(f"only in {n}", colors[f"only:{n}"]) for n in names]
    if len(names) > 2:
        legend.append(("in some, not all", colors["partial"]))
    return legend


def stats(circuit: Circuit) -> dict[str, float | int]:
    """Edges, nodes, sparsity, and how many edges are dangling (no path from input or to logits)."""
    live = circuit.prune_dangling()
    return {"edges": circuit.n_edges, "nodes": len(circuit.nodes()), "sparsity": circuit.sparsity,
            "dangling": circuit.n_edges - live.n_edges, "total_edges": circuit.graph.n_edges,
            "live_nodes": len(live.nodes())}


def select(circuit: Circuit, mode: str, value: float) -> tuple[Circuit, dict]:
    """Apply a threshold control: "score" (keep score >= value), "edges" (the `value` best edges) or
    "sparsity" (share of edges removed).

    Returns:
        The selection, and the view a graph applies to show exactly it: {"threshold": float | None,
        "max_rank": int | None} (edges with score >= threshold and rank < max_rank are shown).
    """
    if mode == "score":
        sel = circuit.threshold(value)
        return sel, {"threshold": view_threshold(sel, float(value)), "max_rank": None}
    if mode == "edges":
        n = int(value)
    elif mode == "sparsity":
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"sparsity must be in [0, 1], got {value}")
        n = round((1.0 - value) * circuit.graph.n_edges)
    else:
        raise ValueError(f"unknown threshold mode {mode!r}; choose from ['edges', 'score', 'sparsity']")
    return circuit.top_n(n), {"threshold": None, "max_rank": n}


def view_threshold(selection: Circuit, fallback: float) -> float:
    """The score threshold a viewer applies to show exactly `selection` (a threshold cut): its lowest kept score.

    Taken from the float32 scores themselves, so JavaScript's float64 comparison agrees with torch's.
    """
    kept = selection.scores[selection.keep]
    return float(kept.min()) if kept.numel() else fallback


def dropped_edges(selection: Circuit) -> list[str]:
    """Ids of the selection's dangling edges (what 'hide dangling edges' removes)."""
    live = selection.prune_dangling()
    return selection.graph.edges(selection.keep & ~live.keep)
