"""Graph ids and edge counts."""

import pytest

from engine.graph import EdgeGraph, count_edges, dst_node


def test_gpt2_small_edge_count():
    assert EdgeGraph(12, 12).n_edges == 32491
    assert EdgeGraph(12, 12, split_embeddings=True).n_edges == 32936


@pytest.mark.parametrize("layers,heads,kv", [(1, 1, None), (2, 3, None), (3, 5, None), (4, 4, 2), (2, 6, 1)])
def test_edge_count_matches_closed_form(layers, heads, kv):
    g = EdgeGraph(layers, heads, kv)
    assert g.n_edges == count_edges(layers, heads, kv)
    assert g.real_edges.shape == (g.n_src, g.n_dst)


def test_ids_and_rules():
    g = EdgeGraph(2, 2)
    assert g.src_names[:4] == ("input", "a0.h0", "a0.h1", "m0")
    assert "a1.h0<k>" in g.dst_names and g.dst_names[-1] == "logits"
    assert g.edge_index("a0.h1->a1.h0<q>") == (g.src_index("a0.h1"), g.dst_index("a1.h0<q>"))
    assert g.real_edges[g.src_index("a0.h0"), g.dst_index("m0")]          # MLP reads its own layer's heads
    with pytest.raises(KeyError, match="does not exist"):
        g.edge_index("a0.h0->a0.h1<q>")                                  # same-layer head -> head
    with pytest.raises(KeyError, match="malformed"):
        g.edge_index("nonsense")
    assert dst_node("a1.h0<v>") == "a1.h0"
    assert EdgeGraph.from_dict(g.to_dict()).same_as(g)


def test_gqa_kv_readers():
    g = EdgeGraph(1, 4, 2)
    assert "a0.kv1<k>" in g.dst_names and "a0.h1<q>" in g.dst_names
    assert "a0.kv0" in g.nodes


def test_invalid_graph():
    with pytest.raises(ValueError):
        EdgeGraph(0, 2)
    with pytest.raises(ValueError):
        EdgeGraph(2, 3, 2)
