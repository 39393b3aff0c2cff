"""Faithfulness-budget pruning: the returned circuit meets the budget (validation, and test on the embedded models),
is the sparsest passing circuit the search evaluated, and the frontier is saved; the unfaithful-run note."""

import json

import pytest
import torch

from engine import Circuit, PruneConfig, evaluate
from engine.budget import Budget, BudgetConfig, EvalResult, frontier_of, prune_to_budget, unfaithful_note
from tests.engine.test_cli import _jsonl, _pair, _run, checkpoint  # noqa: F401 - the module's checkpoint fixture


def _check_search(model, task, budget, circuit, log):
    """Invariants of any search result, checked against fresh evaluations (not the search's own records)."""
    fresh = evaluate(model, task, circuit, split="validation")
    assert budget.met(fresh, log_margin(circuit))
    chosen = log.frontier[log.chosen]
    assert chosen.passed and chosen.n_edges == circuit.n_edges
    assert chosen.value == pytest.approx(budget.measure(fresh), abs=1e-5)
    assert min(p.n_edges for p in log.frontier if p.passed) == circuit.n_edges  # nothing smaller passed
    m = log_margin(circuit)
    for p in log.frontier:  # each recorded verdict agrees with the budget's rule (and the selection margin)
        assert p.passed == (p.value <= budget.value * (1 - m) if budget.kind == "kl" else p.value >= budget.value + m)
    saved = frontier_of(circuit)
    assert saved["chosen"] == log.chosen and len(saved["frontier"]) == len(log.frontier)


def log_margin(circuit):
    return frontier_of(circuit)["search"]["margin"]


@pytest.mark.parametrize("first_target", [0.8, 0.99])   # 0.99: the first run's circuit misses, runs search above it
def test_kl_budget_on_tiny_model(tiny_model, tiny_task, first_target):
    full_empty = evaluate(tiny_model, tiny_task, Circuit.empty(tiny_model.graph), split="validation")
    budget = Budget("kl", full_empty.kl * 0.3)  # a budget the empty circuit misses
    cfg = BudgetConfig(PruneConfig(n_steps=40, batch_size=8, edge_sparsity=first_target, seed=1), refine_steps=15,
                       max_refines=2)
    circuit, log = prune_to_budget(tiny_model, tiny_task, budget, cfg)
    _check_search(tiny_model, tiny_task, budget, circuit, log)
    assert 0 < circuit.n_edges < tiny_model.graph.n_edges
    assert 1 <= log.runs <= 3 and len(log.steps) == 40 + 15 * (log.runs - 1)
    assert [s.step for s in log.steps] == list(range(len(log.steps)))  # one numbering over every run (progress)
    assert json.loads(log.to_json())["budget"] == {"kind": "kl", "value": budget.value}
    if not log.frontier[1].passed:   # [0] is the full model, [1] the first run's circuit
        assert log.runs >= 2 and "cut 0" not in {p.source for p in log.frontier}  # no cuts above a failing run


def test_callback_stops_the_search(tiny_model, tiny_task):
    cfg = BudgetConfig(PruneConfig(n_steps=30, batch_size=8, edge_sparsity=0.8), refine_steps=10)
    circuit, log = prune_to_budget(tiny_model, tiny_task, Budget("kl", 1e-3), cfg, on_step=lambda s: s.step >= 4)
    assert log.stopped_early and log.runs == 1 and len(log.steps) == 5
    assert log.frontier[log.chosen].passed  # still a circuit that meets the budget (at worst the full model)


@pytest.mark.parametrize("kind,value", [("metric", 0.0), ("metric", 1.5), ("accuracy", -0.1), ("kl", 0.0),
                                        ("kl", float("nan")), ("size", 0.5)])
def test_bad_budgets_refused(kind, value):
    with pytest.raises(ValueError):
        Budget(kind, value)


def _result(metric, full_metric, acc, full_acc, kl=0.1):
    return EvalResult(10, 0.9, kl, metric, "logit_diff", acc, acc, full_metric, full_acc, 64)


def test_budget_measures_share_of_full_model():
    b = Budget("metric", 0.9)
    assert b.measure(_result(4.5, 5.0, 1, 1)) == pytest.approx(0.9) and b.met(_result(4.5, 5.0, 1, 1))
    assert not b.met(_result(4.4, 5.0, 1, 1))
    assert Budget("accuracy", 0.9).met(_result(0, 5.0, 0.9, 1.0)) and not Budget("accuracy", 0.9).met(
        _result(5.0, 5.0, 0.85, 1.0))
    assert b.met(_result(4.65, 5.0, 1, 1), margin=0.02) and not b.met(_result(4.55, 5.0, 1, 1), margin=0.02)
    assert Budget("kl", 0.2).met(_result(0, 1, 1, 1, kl=0.2)) and not Budget("kl", 0.2).met(_result(0, 1, 1, 1, kl=0.3))
    with pytest.raises(ValueError, match="KL budget"):
        b.measure(_result(1.0, -0.5, 1, 1))


def test_unfaithful_note():
    assert unfaithful_note(_result(5.0, 5.0, 0.95, 1.0)) is None
    note = unfaithful_note(_result(3.0, 5.0, 0.703, 1.0))
    assert "60% of the model's logit_diff" in note and "70% of the model's accuracy" in note
    assert "--keep-metric 0.9" in note
    assert unfaithful_note(_result(-1.0, -2.0, 0.0, 0.0)) is None  # no positive reference: no share to judge


def test_cli_budget_and_bad_budget(checkpoint, tmp_path):  # noqa: F811
    data = _jsonl(tmp_path / "d.jsonl", [_pair("mary", "john"), _pair("john", "mary")] * 6)
    out = tmp_path / "b"
    r = _run("prune", "--model", str(checkpoint), "--data", str(data), "--out", str(out), "--steps", "10",
             "--batch-size", "4", "--max-kl", "0.05", "--refines", "1", "--refine-steps", "5", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert "budget: KL <= 0.05 nats" in r.stdout and "<- returned" in r.stdout
    meta = json.loads((out / "circuit.json").read_text())
    assert json.loads(meta["budget"])["runs"] >= 1 and json.loads(meta["budget"])["budget"]["kind"] == "kl"
    assert json.loads((out / "log.json").read_text())["frontier"]
    r = _run("prune", "--model", str(checkpoint), "--data", str(data), "--out", str(tmp_path / "x"),
             "--keep-metric", "1.5")
    assert r.returncode == 2 and "Traceback" not in r.stderr and "(0, 1]" in r.stderr
    r = _run("prune", "--model", str(checkpoint), "--data", str(data), "--out", str(tmp_path / "y"),
             "--keep-metric", "0.9", "--max-kl", "0.1")
    assert r.returncode == 2 and "not allowed with" in r.stderr


def _embedded(name, task_name, n):
    import engine
    model = engine.load_model(name, device="cpu")
    task = engine.get_task(task_name, model.tokenizer, n=n, seed=0, n_ctx=model.cfg.n_ctx, bos_id=model.bos_id)
    return model, task


@pytest.mark.slow
@pytest.mark.parametrize("name,task_name,steps,n", [
    ("ioi-2l", "ioi", 300, 256), ("boolean-4l", "boolean_instruction", 300, 256),
    # greater-than's probability difference is noisy: with 64 validation prompts an earlier search picked 14 edges
    # keeping 0.93 there and 0.82 on test (now: 29 edges, 0.96 / 0.92); with 1,024 examples it returns 68 of 110 edges
    # (assets/MODELS.md says why), so the size bound there is two thirds of the graph
    ("greater-than-2l", "greater_than", 300, 256), ("greater-than-2l", "greater_than", 300, 1024)])
def test_budget_met_on_test_split(name, task_name, steps, n):
    """The search selects on validation; the circuit must also keep 90% of the metric on the unseen test split."""
    torch.set_num_threads(1)
    model, task = _embedded(name, task_name, n)
    budget = Budget("metric", 0.9)
    circuit, log = prune_to_budget(model, task, budget, BudgetConfig(PruneConfig(n_steps=steps), refine_steps=100))
    _check_search(model, task, budget, circuit, log)
    test = evaluate(model, task, circuit, split="test")
    assert budget.met(test), (circuit.n_edges, budget.measure(test))
    assert circuit.n_edges < (model.graph.n_edges * 2 // 3 if n > 256 else model.graph.n_edges // 2)
