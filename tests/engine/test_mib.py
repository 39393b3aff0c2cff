"""MIB circuit-localisation files (round trip, naming, bad input) and CPR/CMD against a hand computation and an
independent evaluation loop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import engine
from engine.__main__ import main
from engine.circuit import Circuit
from engine.graph import EdgeGraph
from engine.mib import MIB_SIZES, areas, folder_name, from_mib, mib_score, mib_selections, read_mib, to_mib

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "assets" / "circuits" / "ioi-2l--ioi.safetensors"


def test_areas_match_a_hand_computation() -> None:
    f = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.0, 1.0, 1.2, 1.0)
    # widths .001 .003 .005 .01 .03 .05 .1 .3 .5; mean f per interval .1 .3 .5 .7 .9 1 1 1.1 1.1
    cpr = .001 * .1 + .003 * .3 + .005 * .5 + .01 * .7 + .03 * .9 + .05 * 1 + .1 * 1 + .3 * 1.1 + .5 * 1.1
    # mean |1 - f| per interval .9 .7 .5 .3 .1 0 0 .1 .1
    cmd = .001 * .9 + .003 * .7 + .005 * .5 + .01 * .3 + .03 * .1 + .3 * .1 + .5 * .1
    got = areas(f)
    assert got == pytest.approx((cpr, cmd), abs=1e-12)
    assert got == pytest.approx((1.0675, 0.0915), abs=1e-12)
    assert areas([1.0] * 10) == pytest.approx((0.999, 0.0))   # a perfect circuit at every size


def test_selections_keep_int_share_of_edges_by_absolute_score() -> None:
    """int(0.001 * n) = 0 edges at the smallest size even when one edge would make a path (no max(1, ...))."""
    g = EdgeGraph(2, 2)
    scores = torch.zeros(g.n_src, g.n_dst)
    scores[g.edge_index("input->logits")] = -5.0           # the largest |score|, a whole path on its own
    scores[g.edge_index("input->m0")] = 4.0
    chosen = mib_selections(Circuit(g, scores, g.real_edges.clone()))
    assert [c.n_edges for c in chosen][:1] == [0] and int(0.05 * g.n_edges) == 2
    assert chosen[MIB_SIZES.index(0.05)].edges() == ["input->logits"]   # input->m0 selected, dangling, dropped


def test_gpt2_small_graph_has_mibs_names_and_count() -> None:
    """Edge names and count of MIB's own example (circuits/ioi-eap-ig.json of the MIB circuit track, GPT-2 small)."""
    g = EdgeGraph(12, 12)
    c = Circuit.full(g)
    data = to_mib(c, 768)
    assert data["cfg"] == {"n_layers": 12, "n_heads": 12, "parallel_attn_mlp": False, "d_model": 768}
    assert len(data["edges"]) == 32491
    for name in ("input->a0.h0<q>", "input->a0.h11<v>", "input->m0", "a0.h0->m0", "a0.h1->a1.h0<k>", "m11->logits"):
        assert data["edges"][name]["in_graph"] is True
    assert list(data["nodes"])[:2] == ["input", "a0.h0"] and "m11" in data["nodes"] and "logits" in data["nodes"]


def test_round_trip_through_the_cli(tmp_path: Path) -> None:
    shipped = Circuit.load(SHIPPED)
    assert main(["export-mib", "--circuit", str(SHIPPED), "--out", str(tmp_path / "sub"), "--task", "ioi",
                 "--model-name", "ioi-2l"]) == 0
    path = tmp_path / "sub" / "ioi_ioi-2l" / "importances.json"
    data = json.loads(path.read_text())
    assert {"cfg", "nodes", "edges"} <= set(data) and data["cfg"]["d_model"] == json.loads(
        (ROOT / "assets" / "models" / "ioi-2l" / "config.json").read_text())["n_embd"]
    assert sum(e["in_graph"] for e in data["edges"].values()) == shipped.n_edges
    assert main(["import-mib", "--file", str(path), "--model", "ioi-2l", "--out", str(tmp_path / "back.safetensors")]) == 0
    back = Circuit.load(tmp_path / "back.safetensors")
    assert torch.equal(back.keep, shipped.keep)
    assert torch.equal(back.scores[back.graph.real_edges], shipped.scores[shipped.graph.real_edges].float())
    assert back.meta["config_hash"] == shipped.meta["config_hash"]


def test_folder_names_follow_mib() -> None:
    assert folder_name("ioi", "gpt2") == "ioi_gpt2"
    assert folder_name("arc_easy", "llama3") == "arc-easy_llama3"
    with pytest.raises(ValueError):
        folder_name("", "gpt2")


def test_bad_files_are_refused_with_a_reason(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    g = EdgeGraph(2, 2)
    good = to_mib(Circuit.full(g), 16)
    with pytest.raises(ValueError, match="layers"):
        from_mib({**good, "cfg": {**good["cfg"], "n_layers": 3}}, g)
    edges = dict(good["edges"])
    edges.pop("m1->logits")
    with pytest.raises(ValueError, match="1 of the graph's .* edges are missing"):
        from_mib({**good, "edges": edges}, g)
    with pytest.raises(ValueError, match="does not exist"):
        from_mib({**good, "edges": {**good["edges"], "m1->a0.h0<q>": {"score": 1.0, "in_graph": True}}}, g)
    with pytest.raises(ValueError, match="finite"):
        from_mib({**good, "edges": {**good["edges"], "input->m0": {"score": float("nan"), "in_graph": True}}}, g)
    with pytest.raises(ValueError, match="not an MIB circuit"):
        from_mib([1, 2], g)
    with pytest.raises(ValueError, match="tok"):
        to_mib(Circuit.full(EdgeGraph(2, 2, split_embeddings=True)), 16)
    pt = tmp_path / "importances.pt"
    pt.write_bytes(b"\x80\x04not really")
    with pytest.raises(ValueError, match="pickle"):
        read_mib(pt, g)
    broken = tmp_path / "x.json"
    broken.write_text("{")
    assert main(["import-mib", "--file", str(broken), "--model", "ioi-2l", "--out", str(tmp_path / "o.safetensors")]) == 2
    assert "not a readable JSON file" in capsys.readouterr().err
    binary = {**good, "edges": {k: {"in_graph": v["in_graph"]} for k, v in good["edges"].items()}}
    assert from_mib(binary, g).n_edges == g.n_edges   # MIB's binary circuits have no scores


def _independent_cpr(model, task, circuit: Circuit, n: int) -> tuple[float, float, list[float], list[int]]:  # noqa: ANN001
    """The evaluator's loop written out: sort edges by |score| in Python, model forward per circuit, logit
    difference by indexing, trapezoids by a plain sum."""
    data = task.split("test").select(list(range(n)))
    g = model.graph
    scores = {e: float(circuit.scores[g.edge_index(e)]) for e in g.edges()}
    order = sorted(g.edges(), key=lambda e: -abs(scores[e]))   # stable: ties keep edge order
    cache = model.corrupt_cache(data.corrupt, "interchange")

    def m(keep: torch.Tensor) -> float:
        logits = model(data.clean, keep.float(), cache, data.positions)[:, 0]
        rows = torch.arange(n)
        return float((logits[rows, data.good[:, 0]] - logits[rows, data.bad[:, 0]]).mean())

    full, empty = m(model.graph.real_edges), m(torch.zeros_like(model.graph.real_edges))
    fs, kept = [], []
    for p in MIB_SIZES:
        top = Circuit.from_edges(model.graph, order[: int(p * model.graph.n_edges)]).prune_dangling()
        fs.append((m(top.keep) - empty) / (full - empty))
        kept.append(top.n_edges)
    x = MIB_SIZES
    cpr = sum((x[i + 1] - x[i]) * (fs[i] + fs[i + 1]) / 2 for i in range(9))
    cmd = sum((x[i + 1] - x[i]) * (abs(1 - fs[i]) + abs(1 - fs[i + 1])) / 2 for i in range(9))
    return cpr, cmd, fs, kept


def test_mib_score_matches_an_independent_loop() -> None:
    model = engine.load_model("ioi-2l")
    task = engine.get_task("ioi", model.tokenizer, n=64, seed=0)
    circuit = Circuit.load(SHIPPED)
    signs = torch.where(torch.rand(circuit.scores.shape, generator=torch.Generator().manual_seed(0)) < 0.5, -1.0, 1.0)
    circuit = Circuit(circuit.graph, circuit.scores * signs, circuit.keep, None, circuit.meta)  # |score| ranks
    got = mib_score(model, task, circuit, n_examples=16)
    cpr, cmd, fs, kept = _independent_cpr(model, task, circuit, 16)
    assert got.faithfulness == pytest.approx(fs, abs=1e-4)
    assert list(got.n_kept) == kept and kept[0] == 0 and kept[-1] == 606 and kept[3] < got.n_selected[3]
    assert (got.cpr, got.cmd) == pytest.approx((cpr, cmd), abs=1e-5)
    assert got.n_selected == tuple(int(p * 606) for p in MIB_SIZES) and got.n_selected[0] == 0
    assert got.faithfulness[0] == 0.0 and got.faithfulness[-1] == pytest.approx(1.0, abs=1e-5)


def test_undefined_faithfulness_is_refused() -> None:
    model = engine.load_model("ioi-2l")
    task = engine.get_task("ioi", model.tokenizer, n=64, seed=0)
    same = task.split("test")
    same = type(same)(**{**same.__dict__, "corrupt": same.clean})
    task = type(task)(**{**task.__dict__, "splits": {**task.splits, "test": same}})
    with pytest.raises(ValueError, match="n/a"):
        mib_score(model, task, Circuit.load(SHIPPED), n_examples=8)
