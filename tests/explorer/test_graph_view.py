from __future__ import annotations

import pytest
import torch

from engine import EdgeGraph
from explorer import graph_view

from .conftest import make_circuit


def test_to_nx_has_exactly_the_kept_edges(circuit):
    g = graph_view.to_nx(circuit)
    assert g.number_of_edges() == int(circuit.keep.sum())
    assert {d["id"] for _, _, d in g.edges(data=True)} == set(circuit.edges())
    assert all(d["kept"] for _, _, d in g.edges(data=True))


def test_to_nx_all_sends_every_real_edge_with_flags(circuit):
    g = graph_view.to_nx(circuit, include="all")
    assert g.number_of_edges() == circuit.graph.n_edges
    assert sum(d["kept"] for _, _, d in g.edges(data=True)) == circuit.n_edges


def test_to_nx_max_edges_keeps_the_top_and_the_circuit(circuit):
    g = graph_view.to_nx(circuit, include="all", max_edges=5)
    assert g.number_of_edges() == circuit.n_edges  # the top 5 are inside the top-20 circuit


def test_nodes_have_layer_kind_and_layered_positions(circuit):
    g = graph_view.to_nx(circuit)
    assert set(g.nodes) == set(circuit.graph.nodes)
    kinds = {n: d["kind"] for n, d in g.nodes(data=True)}
    assert kinds["input"] == "input" and kinds["logits"] == "logits" and kinds["m0"] == "mlp" and kinds["a1.h0"] == "attn"
    y = {n: d["y"] for n, d in g.nodes(data=True)}
    assert y["input"] > y["a0.h0"] > y["m0"] > y["a1.h0"] > y["logits"]  # vis y grows downwards
    assert y["a2.h0"] == y["a2.h1"]
    a, b = sorted(["a2.h0", "a2.h1"], key=lambda n: g.nodes[n]["order"])  # heads placed in their untangled order
    assert g.nodes[a]["x"] < g.nodes[b]["x"]
    assert g.nodes["m0"]["label"] == "MLP 0" and "layer 0.5" not in g.nodes["m0"]["title"]


def test_qkv_edges_between_one_pair_are_distinct(circuit):
    full = make_circuit(keep=EdgeGraph(3, 2).n_edges)
    g = graph_view.to_nx(full)
    keys = set(g["input"]["a1.h0"])
    assert keys == {"a1.h0<q>", "a1.h0<k>", "a1.h0<v>"}
    assert {g["input"]["a1.h0"][k]["qkv"] for k in keys} == {"q", "k", "v"}


def test_gqa_graph_places_kv_readers():
    g = EdgeGraph(2, 4, n_kv_heads=2)
    from engine import Circuit
    c = Circuit.full(g)
    nxg = graph_view.to_nx(c)
    assert nxg.number_of_edges() == g.n_edges
    assert nxg.nodes["a1.kv0"]["kind"] == "kv"


@pytest.mark.parametrize("mode,value,expected", [("edges", 7, 7), ("sparsity", 1.0, 0), ("edges", 0, 0)])
def test_select_by_count_matches_the_viewers_rank_filter(circuit, mode, value, expected):
    sel, view = graph_view.select(circuit, mode, value)
    assert sel.n_edges == expected and view == {"threshold": None, "max_rank": expected}
    rank = graph_view.ranks(circuit)
    shown = (rank < view["max_rank"]) & circuit.graph.real_edges
    assert torch.equal(shown, sel.keep)


def test_select_by_count_is_exact_with_tied_scores():
    from engine import Circuit
    g = EdgeGraph(2, 2)
    tied = Circuit(g, g.real_edges.float(), g.real_edges.clone())  # every score 1.0
    sel, view = graph_view.select(tied, "edges", 5)
    assert sel.n_edges == 5
    assert int((graph_view.ranks(tied)[g.real_edges] < view["max_rank"]).sum()) == 5


def test_select_by_score_and_bad_modes(circuit):
    sel, view = graph_view.select(circuit, "score", 0.5)
    assert sel.n_edges == int((circuit.scores[circuit.graph.real_edges] >= 0.5).sum())
    real = circuit.scores[circuit.graph.real_edges]
    assert int((real.double() >= view["threshold"]).sum()) == sel.n_edges  # what the browser's float64 filter shows
    with pytest.raises(ValueError, match="unknown threshold mode"):
        graph_view.select(circuit, "bogus", 1)
    with pytest.raises(ValueError):
        graph_view.select(circuit, "edges", 10**9)


def test_stats_and_dropped_edges(circuit):
    s = graph_view.stats(circuit)
    assert s["edges"] == circuit.n_edges and s["total_edges"] == circuit.graph.n_edges
    dropped = graph_view.dropped_edges(circuit)
    assert len(dropped) == s["dangling"] == circuit.n_dangling()


def test_compare_groups_and_legend():
    a, b = make_circuit(seed=1, config_hash="h"), make_circuit(seed=2, config_hash="h")
    g = graph_view.compare_nx({"a": a, "b": b})
    shared = int((a.keep & b.keep).sum())
    groups = [d["group"] for _, _, d in g.edges(data=True)]
    assert g.number_of_edges() == int((a.keep | b.keep).sum())
    assert groups.count("shared") == shared
    assert groups.count("only:a") == a.n_edges - shared
    labels = [lb for lb, _ in graph_view.group_legend(["a", "b"])]
    assert labels == ["shared", "only in a", "only in b"]


def test_compare_refuses_different_models():
    a, b = make_circuit(seed=1, config_hash="h1"), make_circuit(seed=2, config_hash="h2")
    with pytest.raises(ValueError, match="same model"):
        graph_view.compare_nx({"a": a, "b": b})
    with pytest.raises(ValueError, match="at least two"):
        graph_view.compare_nx({"a": a})


def test_to_nx_does_not_mutate_the_circuit(circuit):
    before = circuit.keep.clone(), circuit.scores.clone()
    graph_view.to_nx(circuit, include="all", max_edges=3)
    assert torch.equal(before[0], circuit.keep) and torch.equal(before[1], circuit.scores)
