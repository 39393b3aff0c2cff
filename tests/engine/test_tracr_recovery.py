"""Recovery of compiled Tracr programs' known circuits by each method (zero ablation, as their ground truth)."""

from __future__ import annotations

import pytest

from engine.methods import METHODS, make_config


pytestmark = pytest.mark.usefixtures("one_thread")


tracr = pytest.importorskip("engine.tracr")
PROGRAMS = sorted(tracr.tracr_models())
FAST = {"eap": dict(n_examples=32, ablation="zero", sparsity=0.5),
        "eap-ig-gates": dict(n_examples=32, ablation="zero", sparsity=0.5, steps=5),   # eap-ig itself needs a
        "eap-ig-activations": dict(n_examples=32, ablation="zero", sparsity=0.5, steps=5),  # corrupted input
        "acdc": dict(n_examples=32, ablation="zero", threshold=1e-4)}


@pytest.fixture(scope="module", params=PROGRAMS)
def program(request: pytest.FixtureRequest):  # noqa: ANN201
    return tracr.load_tracr(request.param, n_train=64)


@pytest.mark.parametrize("method", sorted(FAST))
def test_tracr_top_edges_cover_ground_truth(program, method: str) -> None:  # noqa: ANN001
    model, truth, task = program
    circuit = METHODS[method](model, task, make_config(method, **FAST[method]))
    top = circuit.top_n(truth.n_edges)
    missing = set(truth.edges()) - set(top.edges())
    assert not missing, f"{method} misses {sorted(missing)}"


@pytest.mark.slow
@pytest.mark.parametrize("init", ["open", "eap"])
def test_tracr_edge_pruning_recovery(program, init: str) -> None:  # noqa: ANN001
    """Edge Pruning at the ground truth's sparsity, 2000 steps at the default learning rates (gates 0.1,
    multipliers 1.0; the authors' 0.8 for the gates is unstable here).

    Measured (n_train 64), derived edges of hist / reverse / xproportion in the top-|truth| edges:
    - multipliers 0.1 (the old default), 1000 steps: open init 6/6, 13/13, 5/5, EAP init 6/6, 12/13, 5/5;
      since 6236757 (float rounding changed the trajectory) hist got 5/6 (open) and 4/6 (EAP): the sparsity
      lags its target at 0.1 and the last gates are still half-open at the end;
    - multipliers 1.0, 1000 steps: hist 6/6 from either init, but reverse 9/13 from the open init;
    - multipliers 1.0, 2000 steps (this test): reverse 13/13 open, 12/13 EAP; every case passes.
    With n_train 128 the open init once got 11/13 on reverse, so this asserts three quarters, not all."""
    model, truth, task = program
    cfg = make_config("edge-pruning", n_steps=2000, ablation="zero", init=init,
                      edge_sparsity=1.0 - truth.n_edges / model.graph.n_edges)
    circuit = METHODS["edge-pruning"](model, task, cfg)
    covered = len(set(truth.edges()) & set(circuit.top_n(truth.n_edges).edges()))
    assert covered >= 0.75 * truth.n_edges
