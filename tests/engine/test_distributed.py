"""Multi-process pruning: 2 CPU processes (gloo, FSDP2-sharded model) find the single-process circuit."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from engine import Circuit, PruneConfig, distributed, prune
from engine.config import ModelConfig
from engine.weights import build, load_model
from scripts.app_server import free_port
from tests.conftest import save_gpt2

CFG = dict(n_steps=16, batch_size=8, edge_sparsity=0.6, warmup_steps=8, seed=5, init_log_alpha=1.0)
# Measured (CPU, torch 2.13): max |score difference| 6.7e-6, identical kept edges (70 of 100). The only
# difference is the reduction order of the batch mean (one mean of 8 vs the average of two means of 4),
# which Adam's normalisation can amplify for gates whose gradient is near zero.
SCORE_ATOL = 1e-4


def _worker(rank: int, world: int, port: int, model_cfg: dict, state: dict, task, out: str,  # noqa: ANN001
            stop: tuple[int, int] | None = None) -> None:
    """One rank's run; `stop` = (rank, step): that rank alone asks to stop after that step."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    ctx = distributed.setup("cpu")
    try:  # the loaded model's own weights, rebuilt without importing transformers (keeps start-up short)
        model = distributed.shard(build(ModelConfig.from_dict(model_cfg), state), ctx)
        assert distributed.current() == ctx
        on_step = None if stop is None else (lambda s: rank == stop[0] and s.step >= stop[1])
        circuit, log = prune(model, task, PruneConfig(**CFG), on_step=on_step)
        Path(f"{out}.rank{rank}").write_text(f"{len(log.steps)} {log.stopped_early}")
        if ctx.is_main:
            circuit.save(out)
    finally:
        distributed.teardown()


@pytest.fixture(scope="module")
def deep_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_gpt2(tmp_path_factory.mktemp("gpt2_3l"), n_layer=3, n_head=2, n_embd=8, vocab=32, seed=1)


def test_two_processes_find_the_single_process_circuit(deep_checkpoint: Path, tiny_task, tmp_path: Path) -> None:  # noqa: ANN001
    torch.set_num_threads(1)
    model = load_model(str(deep_checkpoint), device="cpu")
    single, _ = prune(model, tiny_task, PruneConfig(**CFG))
    out = tmp_path / "circuit.safetensors"
    args = (2, free_port(), model.cfg.to_dict(), model.state_dict(), tiny_task, str(out))
    mp.spawn(_worker, args=args, nprocs=2, join=True)
    multi = Circuit.load(out)
    assert multi.graph.same_as(single.graph)
    assert (multi.scores - single.scores).abs().max() <= SCORE_ATOL
    assert torch.equal(multi.keep, single.keep)
    assert 0 < single.n_edges < single.graph.n_edges  # a real selection, not all or nothing
    assert set(multi.meta) == set(Circuit.load(single.save(tmp_path / "single.safetensors")).meta)
    assert multi.meta["prune_config"] == single.meta["prune_config"]


def test_a_stop_on_one_rank_stops_every_rank(deep_checkpoint: Path, tiny_task, tmp_path: Path) -> None:  # noqa: ANN001
    """The app's Cancel (or any on_step stop) on rank 1 alone ends both ranks after the same step; before,
    rank 0 waited forever in the next step's all-reduce."""
    import time
    model = load_model(str(deep_checkpoint), device="cpu")
    out = tmp_path / "circuit.safetensors"
    args = (2, free_port(), model.cfg.to_dict(), model.state_dict(), tiny_task, str(out), (1, 3))
    procs = mp.spawn(_worker, args=args, nprocs=2, join=False)
    deadline = time.monotonic() + 180
    while not procs.join(timeout=5):
        if time.monotonic() > deadline:
            for p in procs.processes:
                p.kill()
            pytest.fail("the ranks did not finish: a stop on one rank hung the other")
    assert [Path(f"{out}.rank{r}").read_text() for r in range(2)] == ["4 True", "4 True"]
    assert Circuit.load(out).graph.n_edges == model.graph.n_edges   # rank 0 still saved the stopped run's circuit


def test_single_process_is_a_no_op(tiny_model) -> None:  # noqa: ANN001
    ctx = distributed.setup("cpu")
    assert (ctx.rank, ctx.world, ctx.is_main, ctx.enabled) == (0, 1, True, False)
    assert distributed.shard(tiny_model, ctx) is tiny_model
    assert not any(hasattr(b, "unshard") for b in tiny_model.blocks)
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.full((3,), 2.0)
    distributed.average_gradients([p], ctx)
    assert torch.equal(p.grad, torch.full((3,), 2.0))
    assert distributed.local_slice(8, ctx) == slice(0, 8)
    assert distributed.mean_scalar(1.5, ctx) == 1.5


def test_uneven_batch_is_rejected() -> None:
    ctx = distributed.DistContext(rank=1, world=3)
    assert distributed.local_slice(9, ctx) == slice(3, 6)
    with pytest.raises(ValueError, match="multiple of 3"):
        distributed.local_slice(8, ctx)
