"""PruneConfig.max_step_loss: a step whose loss is past the cap adds no sparsity pressure and leaves the multipliers
where they are; without a cap (the default) a run is exactly the plain Lagrangian run."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from engine.config import PruneConfig
from engine.prune import prune

pytestmark = pytest.mark.usefixtures("one_thread")
CFG = PruneConfig(n_steps=12, batch_size=8, edge_sparsity=0.9, warmup_steps=4, lr_lambdas=0.5)


def test_a_cap_never_reached_is_the_plain_run(tiny_model, tiny_task) -> None:  # noqa: ANN001
    plain, plog = prune(tiny_model, tiny_task, CFG)
    capped, clog = prune(tiny_model, tiny_task, replace(CFG, max_step_loss=1e9))
    assert torch.equal(plain.scores, capped.scores)
    assert [s.loss for s in plog.steps] == [s.loss for s in clog.steps]
    assert plog.steps[-1].lambda1 > 0   # the multipliers did move


def _one_step(model, task, cfg: PruneConfig, lambdas: float):  # noqa: ANN001, ANN202
    from engine.prune import _State, _step, make_batch
    from engine.runtime import seed_everything
    state = _State(model, cfg, seed_everything(0), None)
    state.lambdas.data.fill_(lambdas)
    torch.manual_seed(0)   # the same gate noise
    _step(model, task, cfg, state, state.optimizers(cfg), make_batch(model, task.split("train")), 0)
    return state.edges.log_alpha.detach().clone(), state.lambdas.detach().clone()


def test_a_step_over_the_cap_adds_no_pressure_and_keeps_the_multipliers(tiny_model, tiny_task) -> None:  # noqa: ANN001
    """Multipliers at 5: over the cap the gates move as with no multipliers at all, and the multipliers stay 5."""
    cfg = replace(CFG, warmup_steps=0)
    capped, lam = _one_step(tiny_model, tiny_task, replace(cfg, max_step_loss=1e-30), 5.0)
    free, _ = _one_step(tiny_model, tiny_task, cfg, 0.0)
    pushed, lam_pushed = _one_step(tiny_model, tiny_task, cfg, 5.0)
    assert torch.equal(lam, torch.full((4,), 5.0)) and not torch.equal(lam_pushed[:2], lam[:2])
    torch.testing.assert_close(capped, free)
    assert not torch.allclose(pushed, free)


def test_multipliers_hold_over_the_cap_despite_momentum(tiny_model, tiny_task) -> None:  # noqa: ANN001
    """After an uncapped step (Adam has momentum), a step over the cap leaves the multipliers exactly where they are."""
    from engine.prune import _State, _step, make_batch
    from engine.runtime import seed_everything
    cfg = replace(CFG, warmup_steps=0)
    state = _State(tiny_model, cfg, seed_everything(0), None)
    opts, batch = state.optimizers(cfg), make_batch(tiny_model, tiny_task.split("train"))
    _step(tiny_model, tiny_task, cfg, state, opts, batch, 0)
    after_first = state.lambdas.detach().clone()
    assert float(after_first[0]) != 0.0
    _step(tiny_model, tiny_task, replace(cfg, max_step_loss=1e-30), state, opts, batch, 1)
    assert torch.equal(state.lambdas.detach(), after_first)


def test_bad_cap_is_refused() -> None:
    with pytest.raises(ValueError, match="max_step_loss"):
        PruneConfig(max_step_loss=0.0)
