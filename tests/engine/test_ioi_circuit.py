"""The embedded IOI model's circuit at >= 95% edge sparsity keeps most of the model's logit difference.

Numbers measured on the shipped ioi-2l (606 edges) are in assets/MODELS.md; the floors here leave margin for
other torch builds. At 95% sparsity a circuit may keep round-down(0.05 * 606) = 30 edges.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

import engine

pytestmark = pytest.mark.usefixtures("one_thread")

ASSETS = Path(__file__).resolve().parents[2] / "assets"
MODEL = "ioi-2l"
SPARSITY = 0.95
KEPT_FLOOR = 0.8  # share of the full model's logit difference (IO - S) the circuit must keep


def _budget(n_edges: int) -> int:
    return math.floor(round((1 - SPARSITY) * n_edges, 6))


@pytest.fixture(scope="module")
def ioi():  # noqa: ANN201
    """The model and the task exactly as `python -m engine prune --model ioi-2l --task ioi` builds them."""
    if not (ASSETS / "models" / MODEL / "config.json").exists():
        pytest.fail(f"embedded model {MODEL} is missing")
    model = engine.load_model(MODEL, device="cpu")
    task = engine.get_task("ioi", model.tokenizer, n=256, seed=0, n_ctx=model.cfg.n_ctx, bos_id=model.bos_id)
    return model, task


def _check(model, task, circuit: engine.Circuit) -> None:  # noqa: ANN001
    cut = circuit.top_n(min(circuit.n_edges, _budget(model.graph.n_edges)))
    assert cut.sparsity >= SPARSITY
    r = engine.evaluate(model, task, cut)
    assert r.full_metric > 1.0  # the model itself separates IO from S
    assert r.metric >= KEPT_FLOOR * r.full_metric, (
        f"{cut.n_edges} edges keep {r.metric:.2f} of {r.full_metric:.2f} logit difference (KL {r.kl:.3f})")


def test_example_circuit_at_95_percent_keeps_logit_difference(ioi) -> None:  # noqa: ANN001
    """The shipped example circuit (scripts/make_example_circuits.py), cut to 95% sparsity by its scores."""
    model, task = ioi
    circuit = engine.Circuit.load(ASSETS / "circuits" / f"{MODEL}--ioi.safetensors")
    assert circuit.graph.n_edges == model.graph.n_edges == 606
    _check(model, task, circuit)


@pytest.mark.slow
def test_default_prune_at_95_percent_keeps_logit_difference(ioi) -> None:  # noqa: ANN001
    """A fresh run with the default PruneConfig (target 0.95, 1000 steps), cut to 95% if it stops short.

    The run's own discretised circuit reaches ~0.94, not 0.95 (assets/MODELS.md says why); the cut of its
    scores to 30 edges kept 99% of the logit difference when measured."""
    model, task = ioi
    circuit, _ = engine.prune(model, task, engine.PruneConfig())
    assert circuit.sparsity >= 0.9
    _check(model, task, circuit)
