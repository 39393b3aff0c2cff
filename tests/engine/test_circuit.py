"""Circuit: immutability, selection, dangling edges, set operations, files."""

import json

import pytest
import torch

from engine.circuit import Circuit
from engine.graph import EdgeGraph


@pytest.fixture()
def circuit():
    g = EdgeGraph(2, 2)
    scores = torch.rand(g.n_src, g.n_dst, generator=torch.Generator().manual_seed(0)) * g.real_edges
    return Circuit(g, scores, scores > 0.5, meta={"model": "m", "config_hash": "abc", "name": "c"})


def test_top_n_exact_and_real_only(circuit):
    for n in (0, 1, 7, circuit.graph.n_edges):
        c = circuit.top_n(n)
        assert c.n_edges == n
        assert not (c.keep & ~circuit.graph.real_edges).any()
    with pytest.raises(ValueError):
        circuit.top_n(circuit.graph.n_edges + 1)


def test_threshold_monotone_and_sparsity(circuit):
    counts = [circuit.threshold(t).n_edges for t in (0.0, 0.2, 0.5, 0.8, 1.01)]
    assert counts == sorted(counts, reverse=True)
    c = circuit.with_sparsity(0.9)
    assert c.n_edges == round(0.1 * circuit.graph.n_edges)
    t = circuit.find_threshold(10)
    assert circuit.threshold(t).n_edges >= 10


def test_methods_never_mutate(circuit):
    scores, keep, ident = circuit.scores.clone(), circuit.keep.clone(), id(circuit)
    circuit.top_n(3), circuit.threshold(0.3), circuit.prune_dangling(), circuit & circuit.top_n(2)
    assert id(circuit) == ident and torch.equal(circuit.scores, scores) and torch.equal(circuit.keep, keep)
    with pytest.raises(AttributeError):
        circuit.keep = keep  # frozen


def test_prune_dangling():
    g = EdgeGraph(2, 2)
    c = Circuit.from_edges(g, ["input->a0.h0<q>", "a0.h0->logits", "a0.h1->m1", "input->a1.h1<v>"])
    pruned = c.prune_dangling()
    assert set(pruned.edges()) == {"input->a0.h0<q>", "a0.h0->logits"}
    assert c.n_dangling() == 2 and pruned.has_path()
    assert not Circuit.from_edges(g, ["input->a0.h0<q>"]).has_path()


def test_set_operations(circuit):
    a, b = circuit.top_n(20), circuit.top_n(10)
    assert (a & b).n_edges == 10 and (a | b).n_edges == 20 and (a - b).n_edges == 10
    other = Circuit.full(EdgeGraph(3, 2))
    with pytest.raises(ValueError, match="different graphs"):
        a & other
    c = Circuit(a.graph, a.scores, a.keep, meta={"config_hash": "zzz"})
    with pytest.raises(ValueError, match="different models"):
        a | c


def test_save_load_round_trip(circuit, tmp_path):
    path = circuit.save(tmp_path / "c.safetensors")
    back = Circuit.load(path)
    assert torch.equal(back.scores, circuit.scores) and torch.equal(back.keep, circuit.keep)
    assert back.meta["model"] == "m" and back.graph.same_as(circuit.graph)
    assert not list(tmp_path.glob("*.tmp"))          # atomic write leaves no temp file


def test_load_rejects_bad_files(circuit, tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="not a readable"):
        Circuit.load(bad)
    from safetensors.torch import save_file
    save_file({"scores": circuit.scores}, str(tmp_path / "v9.safetensors"), metadata={"format_version": "9"})
    with pytest.raises(ValueError, match="unknown circuit format version"):
        Circuit.load(tmp_path / "v9.safetensors")
    with pytest.raises(ValueError, match="no such"):
        Circuit.load(tmp_path / "missing.safetensors")


def test_edges_json_round_trip(circuit, tmp_path):
    path = circuit.save_edges_json(tmp_path / "edges.json")
    data = json.loads(path.read_text())
    assert data["schema_version"] == 1 and len(data["edges"]) == circuit.n_edges
    back = Circuit.load_edges_json(path)
    assert torch.equal(back.keep, circuit.keep)
    (tmp_path / "x.json").write_text(json.dumps({"schema_version": 7}))
    with pytest.raises(ValueError, match="schema version"):
        Circuit.load_edges_json(tmp_path / "x.json")


def test_nan_scores_rejected():
    g = EdgeGraph(1, 1)
    with pytest.raises(ValueError, match="NaN"):
        Circuit(g, torch.full((g.n_src, g.n_dst), float("nan")), g.real_edges)


def test_same_architecture_different_weights_refused(tmp_path):
    from engine.weights import load_model
    from tests.conftest import save_gpt2
    a = load_model(str(save_gpt2(tmp_path / "a", seed=1)), device="cpu")
    b = load_model(str(save_gpt2(tmp_path / "b", seed=2)), device="cpu")
    assert a.cfg.hash() == b.cfg.hash() and a.weights_hash != b.weights_hash
    ca = Circuit(a.graph, a.graph.real_edges.float(), a.graph.real_edges, meta={"weights_hash": a.weights_hash})
    cb = Circuit(b.graph, b.graph.real_edges.float(), b.graph.real_edges, meta={"weights_hash": b.weights_hash})
    with pytest.raises(ValueError, match="weights hash"):
        ca & cb
