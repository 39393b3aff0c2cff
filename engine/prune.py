"""Edge Pruning (Bhaskar et al. 2024, arXiv 2406.16778): learn hard-concrete edge gates under a sparsity constraint."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from torch import Tensor

from . import distributed, recipe
from .resume import load_checkpoint, save_checkpoint
from .circuit import Circuit
from .config import PruneConfig
from .masks import HardConcreteGates, deterministic
from .metrics import kl_div
from .model import CorruptCache, MaskedTransformer, Workspace
from .runtime import keep_freed_memory, seed_everything
from .tasks.base import Task, TaskData

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepLog:
    """What one optimisation step measured (sparsities are expected-L0 shares of removed gates)."""

    step: int
    n_steps: int
    loss: float
    kl: float
    edge_sparsity: float
    edge_target: float
    node_sparsity: float | None
    node_target: float | None
    lambda1: float
    lambda2: float
    sampled_sparsity: float   # share of real edges whose sampled gate is exactly 0 this step
    elapsed_s: float


@dataclass
class PruneLog:
    """The history of a run; `warnings` says when the result needs care (e.g. no path input -> logits)."""

    steps: list[StepLog] = field(default_factory=list)
    stopped_early: bool = False
    warnings: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    def to_json(self) -> str:
        return json.dumps({"steps": [asdict(s) for s in self.steps], "stopped_early": self.stopped_early,
                           "warnings": self.warnings, "elapsed_s": self.elapsed_s})


@dataclass(eq=False)
class _Batch:
    data: TaskData
    cache: CorruptCache
    target: Tensor       # reference logits (or outputs) at the scored positions [batch, K, vocab]
    valid: Tensor        # bool [batch, K]
    once: bool = False   # made for one step only: the masked forward may overwrite `cache`


class _Batches:
    """Deterministic batch order (a function of seed and step, so resuming repeats it exactly).

    The model is frozen, so nothing here depends on the gates: the clean targets (small: the logits at
    the scored positions) are kept per example once computed, and the corrupted activations of every
    batch too when the whole train split fits `cache_budget_mb`. A step then costs one masked
    forward and backward instead of three forwards and a backward.
    """

    def __init__(self, model: MaskedTransformer, data: TaskData, cfg: PruneConfig, workspace: Workspace) -> None:
        self.model, self.data, self.cfg, self.workspace = model, data, cfg, workspace
        self.bs = min(cfg.batch_size, len(data))
        self.n_batches = max(1, len(data) // self.bs)
        g, c, n = model.graph, model.cfg, len(data)
        target_mb = n * data.positions.shape[1] * c.vocab_out * 4 / 2**20
        cache_mb = n * data.clean.shape[1] * c.d_model * (g.n_src + 2 * c.n_layers + 1) * 4 / 2**20
        self.cached: dict[int, _Batch] | None = {} if target_mb + cache_mb <= cfg.cache_budget_mb else None
        self.targets: dict[int, Tensor] | None = {} if target_mb <= cfg.cache_budget_mb else None

    def _perm(self, epoch: int) -> Tensor:
        gen = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + epoch + 1)
        return torch.randperm(len(self.data), generator=gen)

    def _make(self, perm: Tensor, i: int) -> _Batch:
        idx = perm[i * self.bs:(i + 1) * self.bs]
        idx = idx[distributed.local_slice(len(idx))]  # distributed: this rank's share of the global batch
        keys = idx.tolist()
        known = self.targets is not None and all(k in self.targets for k in keys)
        target = torch.stack([self.targets[k] for k in keys]) if known else None  # type: ignore[index]
        one_step = self.cached is None   # its corrupted cache lives in the run's workspace until the next batch
        batch = make_batch(self.model, self.data.select(idx), self.cfg.ablation, target,
                           self.workspace if one_step else None)
        if self.targets is not None and not known:
            self.targets.update(zip(keys, batch.target))
        return batch

    def get(self, step: int) -> _Batch:
        epoch, i = divmod(step, self.n_batches)
        if self.cached is None:  # a fresh shuffle every epoch; the batch is used once
            return replace(self._make(self._perm(epoch), i), once=True)
        # fixed batches (cached once), visited in a new order every epoch
        j = int(torch.randperm(self.n_batches, generator=torch.Generator().manual_seed(self.cfg.seed + epoch))[i])
        if j not in self.cached:
            self.cached[j] = self._make(self._perm(-1), j)
        return self.cached[j]


@torch.no_grad()
def make_batch(model: MaskedTransformer, data: TaskData, ablation: str = "interchange",
               target: Tensor | None = None, workspace: Workspace | None = None) -> _Batch:
    """Everything a step needs that does not depend on the gates, computed once without grad."""
    data = data.to(model.device)
    source = data.clean if ablation == "mean" else data.corrupt
    cache = model.corrupt_cache(source, ablation, workspace)
    if target is None:
        target = model.reference_forward(data.clean, data.positions)
    return _Batch(data, cache, target, data.positions >= 0)


def output_loss(kind: str, target: Tensor, logits: Tensor, valid: Tensor) -> Tensor:
    """Per-example faithfulness loss: KL(model || circuit) in nats, or squared error for numeric outputs."""
    if kind == "kl":
        return kl_div(target, logits, valid)
    if kind == "mse":
        err = (logits.float() - target.float()).pow(2).mean(-1)
        v = valid.to(err.dtype)
        return (err * v).sum(-1) / v.sum(-1).clamp(min=1)
    raise ValueError(f"unknown loss {kind!r}; choose from ['kl', 'mse']")


def _target(final: float, step: int, warmup: int) -> float:
    return final if warmup <= 0 else final * min(1.0, step / warmup)


def _lagrangian(gap: Tensor, lambdas: Tensor) -> Tensor:
    """lambda1 * (t - s) + lambda2 * (t - s)^2; the lambdas ascend so the constraint binds."""
    return lambdas[0] * gap + lambdas[1] * gap * gap


class _State(torch.nn.Module):
    """Everything a run learns: edge gates, optional node gates, Lagrange multipliers."""

    def __init__(self, model: MaskedTransformer, cfg: PruneConfig, gen: torch.Generator,
                 init_log_alpha: Tensor | None) -> None:
        super().__init__()
        g = model.graph
        self.edges = HardConcreteGates(g.real_edges, cfg.init_log_alpha, cfg.init_std, gen)
        if init_log_alpha is not None:
            if tuple(init_log_alpha.shape) != (g.n_src, g.n_dst):
                raise ValueError(f"init_log_alpha must have shape {(g.n_src, g.n_dst)}")
            self.edges.log_alpha.data.copy_(init_log_alpha.float())
        self.nodes = (HardConcreteGates(torch.ones(g.n_src, dtype=torch.bool), cfg.init_log_alpha, cfg.init_std, gen)
                      if cfg.node_sparsity is not None or cfg.recipe == "authors" else None)
        self.lambdas = torch.nn.Parameter(torch.zeros(4))  # edge l1, l2, node l1, l2

    def keep(self) -> tuple[Tensor, Tensor | None, Tensor]:
        """(the edge gates used: edge x writer node, the node gates, the sampled edge gates alone)."""
        z = self.edges.sample()
        if self.nodes is None:
            return z, None, z
        zn = self.nodes.sample()
        return z * zn[:, None], zn, z

    def optimizers(self, cfg: PruneConfig) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
        gates = [self.edges.log_alpha] + ([self.nodes.log_alpha] if self.nodes is not None else [])
        if cfg.recipe == "authors":   # AdamW with weight decay on gates and multipliers (engine/recipe.py)
            return (torch.optim.AdamW(gates, lr=cfg.lr_gates, weight_decay=recipe.WEIGHT_DECAY),
                    torch.optim.AdamW([self.lambdas], lr=cfg.lr_lambdas, weight_decay=recipe.WEIGHT_DECAY))
        return torch.optim.Adam(gates, lr=cfg.lr_gates), torch.optim.Adam([self.lambdas], lr=cfg.lr_lambdas)


def check_task(model: MaskedTransformer, task: Task, splits: tuple[str, ...] = ("train",)) -> None:
    """What a run (and its evaluation on `splits` after it) could fail on, checked before its first step: every
    split present, the metric and loss known, token ids inside the model's vocabulary, lengths inside its
    context, a scored position in every example.

    Raises:
        ValueError: naming the split and the problem.
    """
    from .metrics import get_metric
    try:
        get_metric(task.metric)
    except KeyError as e:
        raise ValueError(e.args[0]) from None
    if task.loss not in ("kl", "mse"):
        raise ValueError(f"unknown loss {task.loss!r}; choose from ['kl', 'mse']")
    c = model.cfg
    for split in splits:
        try:
            d = task.split(split)
        except KeyError as e:
            raise ValueError(f"{e.args[0]}; a run needs {' and '.join(splits)} examples") from None
        tokens = torch.cat([d.clean, d.corrupt])
        if int(tokens.max()) >= c.d_vocab or int(tokens.min()) < 0:
            raise ValueError(f"task {task.name!r} ({split}): token id {int(tokens.max())} is outside the model's "
                             f"vocabulary of {c.d_vocab}; was the data tokenized for another model?")
        if int(d.lengths.max()) > c.n_ctx:
            raise ValueError(f"task {task.name!r} ({split}): an example of {int(d.lengths.max())} tokens; the model "
                             f"reads at most {c.n_ctx}")
        if not bool((d.positions >= 0).any(1).all()):
            raise ValueError(f"task {task.name!r} ({split}): an example has no scored position")
        answers = torch.cat([d.answers.flatten(), d.good.flatten(), d.bad.flatten()])
        if int(answers.max()) >= c.vocab_out:
            raise ValueError(f"task {task.name!r} ({split}): answer token id {int(answers.max())} is outside the "
                             f"model's output vocabulary of {c.vocab_out}")


def prune(model: MaskedTransformer, task: Task, cfg: PruneConfig,
          on_step: Callable[[StepLog], bool | None] | None = None, init_log_alpha: Tensor | None = None,
          checkpoint_dir: str | Path | None = None, checkpoint_every: int = 100) -> tuple[Circuit, PruneLog]:
    """Learn hard-concrete edge gates that keep the model's outputs with few edges.

    Args:
        model: a frozen MaskedTransformer (never modified).
        task: the data; its train split is used, its `loss` chooses KL or squared error.
        cfg: hyper-parameters (serialized into the circuit's metadata).
        on_step: called after every step with its StepLog; return True to stop the run cleanly.
        init_log_alpha: [n_src, n_dst] initial gate logits (e.g. from EAP scores); None = cfg.init_log_alpha.
        checkpoint_dir: where `checkpoint.safetensors` is written every `checkpoint_every` steps; an
            existing checkpoint there with the same config is resumed.
    Returns:
        (the circuit with per-edge scores, discretised as the authors do, and the run's log).
    """
    check_task(model, task)
    gen = seed_everything(cfg.seed)
    torch.manual_seed(cfg.seed)
    if model.device.type == "cpu":
        keep_freed_memory()   # else every step page-faults its temporaries afresh (engine/runtime.py)
    state = _State(model, cfg, gen, init_log_alpha).to(model.device)
    opt_gates, opt_lambdas = state.optimizers(cfg)
    workspace = Workspace()
    batches, plog, start = _Batches(model, task.split("train"), cfg, workspace), PruneLog(), 0
    ckpt = Path(checkpoint_dir) / "checkpoint.safetensors" if checkpoint_dir else None
    if ckpt is not None and ckpt.is_file():
        start = load_checkpoint(ckpt, state, (opt_gates, opt_lambdas), cfg)
        log.info("resumed from %s at step %d", ckpt, start)
    t0 = time.perf_counter()
    for step in range(start, cfg.n_steps):
        entry = _step(model, task, cfg, state, (opt_gates, opt_lambdas), batches.get(step), step, workspace)
        entry = StepLog(**{**asdict(entry), "elapsed_s": time.perf_counter() - t0})
        plog.steps.append(entry)
        if distributed.any_rank(not torch.isfinite(torch.tensor(entry.loss))):
            plog.warnings.append(f"the loss became {entry.loss} at step {step}; lower lr_gates or lr_lambdas")
            plog.stopped_early = True
            break
        if ckpt is not None and (step + 1) % checkpoint_every == 0 and distributed.current().is_main:
            save_checkpoint(ckpt, state, (opt_gates, opt_lambdas), cfg, step + 1)
        if distributed.any_rank(on_step is not None and bool(on_step(entry))):   # every rank stops together
            plog.stopped_early = True
            break
    plog.elapsed_s = time.perf_counter() - t0
    if ckpt is not None and plog.steps and distributed.current().is_main:
        save_checkpoint(ckpt, state, (opt_gates, opt_lambdas), cfg, plog.steps[-1].step + 1)
    circuit = _circuit(model, task, cfg, state, plog)
    if cfg.recipe == "authors" and not model.graph.split_embeddings:
        plog.warnings.append("the authors' recipe prunes the graph with separate token and position writers; this "
                             "model has one input writer (load it with split_embeddings=True, or --graph split)")
    return circuit, plog


def _step(model: MaskedTransformer, task: Task, cfg: PruneConfig, state: _State,
          opts: tuple[torch.optim.Optimizer, torch.optim.Optimizer], batch: _Batch, step: int,
          workspace: Workspace | None = None) -> StepLog:
    keep, _, edge_z = state.keep()
    out = model(batch.data.clean, keep, batch.cache, batch.data.positions, overwrite_corrupt=batch.once,
                workspace=workspace)
    fit = output_loss(task.loss, batch.target, out, batch.valid).mean()
    kl = distributed.mean_scalar(float(fit.detach()))  # distributed: the global batch's mean
    # a step whose loss is past what the run can afford (cfg.max_step_loss) adds no sparsity pressure and the
    # multipliers hold: they never push past the sparsity the loss allows (None: the plain Lagrangian every step)
    afford = cfg.max_step_loss is None or kl <= cfg.max_step_loss
    scale = 1.0 if afford else 0.0   # 1.0 * x == x: an uncapped run is bit for bit the plain one
    t_edge = _target(cfg.edge_sparsity, step, cfg.warmup)
    authors = cfg.recipe == "authors"
    s_edge = (recipe.sampled_sparsity(edge_z, state.edges.real) if authors
              else state.edges.expected_sparsity())
    loss = fit + scale * _lagrangian(t_edge - s_edge, state.lambdas[:2])
    t_node = s_node = None
    if state.nodes is not None:
        t_node = _target(cfg.node_sparsity or 0.0, step, cfg.warmup)
        s_node = state.nodes.expected_sparsity()
        if not authors:   # the authors train node gates by the KL alone
            loss = loss + scale * _lagrangian(t_node - s_node, state.lambdas[2:])
    for opt in opts:
        opt.zero_grad(set_to_none=True)
    loss.backward()
    distributed.average_gradients(state.parameters())  # distributed: gates stay identical on every rank
    state.lambdas.grad.neg_()  # gradient ascent on the multipliers
    if authors:   # global gradient-norm clipping and the linear warm-up / decay schedule, as their Trainer
        torch.nn.utils.clip_grad_norm_(list(state.parameters()), recipe.GRAD_CLIP)
        factor = recipe.lr_factor(step, cfg.n_steps)
        for opt, lr in zip(opts, (cfg.lr_gates, cfg.lr_lambdas)):
            for group in opt.param_groups:
                group["lr"] = lr * factor
    opts[0].step()
    if afford:
        opts[1].step()
    real = state.edges.real
    sampled = float(((keep == 0) & real).sum()) / max(int(real.sum()), 1)
    return StepLog(step, cfg.n_steps, float(loss.detach()), kl, float(s_edge.detach()), t_edge,
                   None if s_node is None else float(s_node.detach()), t_node,
                   float(state.lambdas[0].detach()), float(state.lambdas[1].detach()), sampled, 0.0)


def _circuit(model: MaskedTransformer, task: Task, cfg: PruneConfig, state: _State, plog: PruneLog) -> Circuit:
    """Scores = deterministic gates (edge x writer node); keep = the authors' discretisation."""
    with torch.no_grad():
        scores, keep = state.edges.deterministic().cpu(), state.edges.discretised().cpu()
        node_scores = None
        if state.nodes is not None:
            node_scores = deterministic(state.nodes.log_alpha).cpu()
            scores = scores * node_scores[:, None]
            keep = keep & state.nodes.discretised().cpu()[:, None]
        if cfg.recipe == "authors":   # per gate tensor, removed writers' edges dropped, threshold to the target
            keep = recipe.authors_readout(state.edges, state.nodes, model.graph, cfg.edge_sparsity)
    if not torch.isfinite(scores).all():
        raise ValueError("pruning diverged (non-finite gate logits); lower lr_gates or lr_lambdas")
    last = plog.steps[-1] if plog.steps else None
    meta = {"model": model.name, "config_hash": model.cfg.hash(), "weights_hash": model.weights_hash,
            "architecture": model.cfg.architecture,
            "model_config": json.dumps(model.cfg.to_dict()), "task": task.name, "method": "edge-pruning",
            "definition": recipe.definition(cfg.recipe, model.graph),
            "prune_config": json.dumps(cfg.to_dict()),
            "train_metrics": json.dumps({"kl": last.kl, "edge_sparsity": last.edge_sparsity,
                                         "steps": len(plog.steps), "elapsed_s": plog.elapsed_s} if last else {})}
    circuit = Circuit(model.graph, scores, keep, node_scores, meta)
    if not circuit.has_path():
        plog.warnings.append(
            f"the discretised circuit ({circuit.n_edges} edges) has no path from the input to the logits: "
            f"the sparsity target {cfg.edge_sparsity} is too high for this task; lower it or train longer")
    return circuit
