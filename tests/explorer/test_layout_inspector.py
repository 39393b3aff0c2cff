"""Head order, node names, the inspector's edge lists and neighbourhoods, compare cuts and metadata (pure)."""

from __future__ import annotations

import json
from itertools import combinations

import pytest
import torch

from engine import Circuit, EdgeGraph
from engine.graph import dst_node
from explorer import inspector, layout, overlap

from .conftest import make_circuit


def _crossings(order: dict[str, int], edges: list[tuple[str, str]]) -> int:
    """Crossings between two rows of heads drawn as straight lines (independent of the heuristic)."""
    return sum((order[a] - order[c]) * (order[b] - order[d]) < 0 for (a, b), (c, d) in combinations(edges, 2))


def test_head_order_untangles_a_permutation():
    g = EdgeGraph(2, 4)
    perm = [2, 0, 3, 1]  # a0.h{i} -> a1.h{perm[i]}: 3 crossings in index order
    edges = [(f"a0.h{i}", f"a1.h{p}<v>") for i, p in enumerate(perm)]
    pairs = [(a, dst_node(b)) for a, b in edges]
    index = {f"a{L}.h{h}": h for L in range(2) for h in range(4)}
    assert _crossings(index, pairs) == 3
    order = layout.head_order(g, edges)
    assert _crossings(order, pairs) == 0
    assert sorted(order[f"a1.h{h}"] for h in range(4)) == [0, 1, 2, 3]  # a permutation of each row


def test_node_labels_and_titles():
    assert layout.node_label("m3") == "MLP 3" and layout.node_label("a1.h2") == "a1.h2"
    assert layout.node_label("logits") == "logits"
    assert "layer 0.5" not in layout.node_title("m0") and "MLP 0" in layout.node_title("m0")
    assert layout.node_title("a2.h5") == "a2.h5: attention head 5 of layer 2"


def test_node_edges_match_the_circuits_edge_list(circuit):
    for node in ("a1.h0", "m0", "logits", "input"):
        incoming, outgoing = inspector.node_edges(circuit, node)
        want_in = {e for e in circuit.edges() if dst_node(e.split("->")[1]) == node}
        want_out = {e for e in circuit.edges() if e.split("->")[0] == node}
        assert {r["edge"] for r in incoming} == want_in and {r["edge"] for r in outgoing} == want_out
        scores = circuit.edge_scores()
        assert all(r["score"] == pytest.approx(scores[r["edge"]]) for r in incoming + outgoing)
        assert [r["score"] for r in incoming] == sorted((r["score"] for r in incoming), reverse=True)


def test_neighbourhood_hops():
    g = EdgeGraph(2, 2)
    c = Circuit.from_edges(g, ["input->a0.h0<v>", "a0.h0->a1.h1<q>", "a1.h1->logits"])
    assert inspector.neighbourhood(c, "a0.h0", 0) == {"a0.h0"}
    assert inspector.neighbourhood(c, "a0.h0", 1) == {"a0.h0", "input", "a1.h1"}
    assert inspector.neighbourhood(c, "a0.h0", 2) == {"a0.h0", "input", "a1.h1", "logits"}


def test_cut_group_counts_and_layers_agree():
    a, b = make_circuit(seed=1, keep=30, task="t1"), make_circuit(seed=2, keep=12, task="t2")
    shown = overlap.cut({"A": a, "B": b}, "edge count", 15)
    assert [c.n_edges for c in shown.values()] == [15, 15]
    counts = overlap.group_counts(shown)
    shared = int((shown["A"].keep & shown["B"].keep).sum())
    assert counts == {"shared": shared, "only:A": 15 - shared, "only:B": 15 - shared}
    rows = overlap.by_layer(shown)
    assert sum(r["edges"] for r in rows) == 30 - shared
    for grp, n in counts.items():
        assert sum(r["edges"] for r in rows if r["group"] == grp) == n
    (o,) = overlap.pairwise(shown)
    assert (o.n_a, o.n_b, o.shared) == (15, 15, shared)  # the p-value is for the cut, not the saved circuits
    assert overlap.cut({"A": a}, "sparsity", 1.0)["A"].n_edges == 0
    with pytest.raises(ValueError, match="unknown cut"):
        overlap.cut({"A": a}, "bogus")


def test_intersection_metadata_names_parents_and_tasks():
    a, b = make_circuit(seed=1, task="boolean_instruction"), make_circuit(seed=2, task="boolean_fewshot")
    inter = overlap.combine({"instr": a, "few": b}, "&")
    assert torch.equal(inter.keep, a.keep & b.keep)
    parents = json.loads(inter.meta["parents"])
    assert [(p["name"], p["task"]) for p in parents] == [("instr", "boolean_instruction"), ("few", "boolean_fewshot")]
    assert inter.meta["task"] == "boolean_instruction & boolean_fewshot"
    assert overlap.combine({"x": a, "y": a}, "|").meta["task"] == "boolean_instruction"  # one shared task
