"""Faithfulness-budget pruning: ask for faithfulness, get the sparsest circuit found that has it.

A user states what the circuit must keep on the validation split (a share of the full model's task metric
or accuracy, or a largest KL). `prune_to_budget` then searches sizes instead of asking for a sparsity target:

1. one Edge Pruning run (`BudgetConfig.prune`, at its sparsity target) ranks the edges by score;
2. bisection over edge counts on that ranking: the smallest top-k cut that meets the budget on validation
   (each cut is evaluated, so a cut below the run's own circuit, whose order is not always a ranking, is
   only taken when it is measured to pass);
3. a descent: a short run warm-started from the best circuit so far (its edges open, the rest closed) at a
   smaller size (`shrink` x its edges), then bisection again on that run's scores between its own size and
   the best so far. A smaller passing circuit becomes the best; a failure brings the next size closer.

Every evaluated circuit is a point of the sparsity-faithfulness frontier (`BudgetLog.frontier`), saved in
the circuit's metadata so the app can plot what the search explored. Runs are seeded, so the search is
deterministic. `engine.prune` stays the optimisation loop; this module only calls it.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import torch

from .budget_spec import UNFAITHFUL_BELOW, Budget, BudgetConfig, FrontierPoint, frontier_record
from .circuit import Circuit
from .config import PruneConfig
from .evaluate import EvalResult, evaluate
from .methods.warmstart import init_from_circuit
from .model import MaskedTransformer
from .prune import PruneLog, StepLog, prune
from .tasks.base import Task


@dataclass
class BudgetLog(PruneLog):
    """A PruneLog over every run of the search (steps in run order) plus the frontier it explored."""

    budget: Budget | None = None
    frontier: list[FrontierPoint] = field(default_factory=list)
    chosen: int = -1          # index into frontier of the returned circuit
    runs: int = 0

    def to_json(self) -> str:
        base = json.loads(super().to_json())
        return json.dumps({**base, **self.summary()})

    def summary(self) -> dict:
        return {"budget": asdict(self.budget) if self.budget else None, "chosen": self.chosen, "runs": self.runs,
                "frontier": [asdict(p) for p in self.frontier]}


class _Search:
    """State of one search: the runs' steps, the evaluated points, cancellation."""

    def __init__(self, model: MaskedTransformer, task: Task, budget: Budget, cfg: BudgetConfig,
                 on_step: Callable[[StepLog], bool | None] | None) -> None:
        self.model, self.task, self.budget, self.cfg, self.on_step = model, task, budget, cfg, on_step
        self.log = BudgetLog(budget=budget)
        self.n = model.graph.n_edges

    def run(self, pcfg: PruneConfig, init: Circuit | None) -> Circuit:
        """One Edge Pruning run (warm-started from `init`'s edges when given); its steps join the log."""
        offset = len(self.log.steps)

        def relay(s: StepLog) -> bool | None:
            s = replace(s, step=offset + s.step)
            self.log.steps.append(s)
            return None if self.on_step is None else self.on_step(s)

        # all of the best circuit's edges open, the others closed (unlike per-size runs, which open only the size's
        # top edges: here that was measured worse, assets/MODELS.md)
        alpha = None if init is None else init_from_circuit(init, init.n_edges / self.n)
        circuit, plog = prune(self.model, self.task, pcfg, on_step=relay, init_log_alpha=alpha)
        self.log.runs += 1
        self.log.warnings += [w for w in plog.warnings if "no path" not in w]  # a search point, not the result
        self.log.stopped_early |= plog.stopped_early
        return circuit

    def point(self, circuit: Circuit, source: str) -> bool:
        r = evaluate(self.model, self.task, circuit, split="validation") if self.cfg.eval_limit is None else \
            _evaluate_limited(self.model, self.task, circuit, self.cfg.eval_limit)
        ok = self.budget.met(r, self.cfg.margin)
        self.log.frontier.append(FrontierPoint(circuit.n_edges, circuit.sparsity, self.budget.measure(r), r.kl,
                                               r.metric, r.accuracy, ok, source))
        return ok

    def smallest_cut(self, scored: Circuit, lo: int, hi: int, best: Circuit, source: str) -> tuple[Circuit, int]:
        """Bisection over top-k cuts of `scored` for k in (lo, hi): size lo is taken to fail, `best` (hi edges)
        passes. Returns (the smallest passing cut found, else `best`; the largest failing size seen)."""
        while hi - lo > 1:
            mid = (lo + hi) // 2
            cut = scored.top_n(mid)
            if self.point(cut, source):
                hi, best = mid, cut
            else:
                lo = mid
        return best, lo


def prune_to_budget(model: MaskedTransformer, task: Task, budget: Budget, cfg: BudgetConfig | None = None,
                    on_step: Callable[[StepLog], bool | None] | None = None) -> tuple[Circuit, BudgetLog]:
    """The sparsest circuit the search finds that meets `budget` on the validation split.

    Returns (circuit, log): the circuit's metadata carries the budget, the search settings and the frontier
    (`meta["budget"]`, JSON); `log.frontier[log.chosen]` is the returned circuit's point. The full model
    always meets a share budget, so a circuit is always returned (with a warning if nothing smaller passed).

    Raises:
        ValueError: a share budget on a task where the full model's metric is <= 0.
    """
    t0 = time.perf_counter()
    cfg = cfg or BudgetConfig()
    s = _Search(model, task, budget, cfg, on_step)
    full = Circuit.full(model.graph, meta=dict(model_meta(model, task)))
    full_ok = s.point(full, "full model")  # first: a budget that cannot be measured fails before any run
    first = s.run(cfg.prune, None)
    if s.point(first, "run 0"):  # below a passing run: bisection over its ranking's cuts (cheap, each one measured)
        best, lo = s.smallest_cut(first, 0, first.n_edges, first, "cut 0")
    else:  # above a failing run its ranking misleads (boolean-4l: its 70 edges kept 0.84 of the metric, its top
        best, lo = full, first.n_edges  # 274 edges 0.74), so larger sizes are searched by runs, not by cuts
    if not full_ok:
        s.log.warnings.append(f"even the full model misses the budget ({budget.describe(task.metric)}) on validation")
    for i in range(1, cfg.max_refines + 1):  # a bracket (lo fails, best passes) narrowed by warm-started runs
        k = int(best.n_edges * cfg.shrink) if lo == 0 else round(math.sqrt(lo * best.n_edges))
        if not lo < k < best.n_edges or s.log.stopped_early or not full_ok:
            break
        pcfg = replace(cfg.prune, n_steps=cfg.refine_steps, edge_sparsity=1.0 - k / s.n, warmup_steps=0,
                       seed=cfg.prune.seed + i)
        trial = s.run(pcfg, best)   # from the best passing circuit down to k edges
        cut = trial.top_n(k)   # the size asked for, whether or not the short run's own circuit reached it
        if s.point(cut, f"run {i} cut"):
            best, lo = s.smallest_cut(trial, lo, k, cut, f"run {i} cut")
        else:
            best, _ = s.smallest_cut(trial, k, best.n_edges, best, f"run {i} cut")
            lo = k
    s.log.elapsed_s = time.perf_counter() - t0
    return _finish(s, best, first)


def _finish(s: _Search, best: Circuit, first: Circuit) -> tuple[Circuit, BudgetLog]:
    passing = [i for i, p in enumerate(s.log.frontier) if p.passed and p.n_edges == best.n_edges]
    s.log.chosen = passing[-1] if passing else -1
    if best.n_edges == s.n:
        s.log.warnings.append(f"no circuit smaller than the full model met the budget "
                              f"({s.budget.describe(s.task.metric)}); train longer or relax the budget")
    meta = {**first.meta, **{k: v for k, v in best.meta.items() if k == "selection"},
            "budget": json.dumps({**s.log.summary(), "search": s.cfg.to_dict()})}
    return Circuit(best.graph, best.scores, best.keep, best.node_scores, meta), s.log


def model_meta(model: MaskedTransformer, task: Task) -> dict[str, str]:
    return {"model": model.name, "config_hash": model.cfg.hash(), "task": task.name}


@torch.no_grad()
def _evaluate_limited(model: MaskedTransformer, task: Task, circuit: Circuit, limit: int) -> EvalResult:
    from .evaluate import evaluate_many
    return evaluate_many(model, task, [circuit], split="validation", limit=limit)[0]


def frontier_of(circuit: Circuit) -> dict | None:
    """The search record saved in a budget circuit's metadata (None for a circuit found otherwise)."""
    return frontier_record(circuit)


def unfaithful_note(r: EvalResult, below: float = UNFAITHFUL_BELOW) -> str | None:
    """A sentence saying the circuit is unfaithful (keeps < `below` of the model's metric or accuracy) and what
    to change; None when it is faithful, or when the model itself has no positive metric to share."""
    shares = {}
    if r.full_metric > 0:
        shares[r.metric_name] = r.metric / r.full_metric
    if r.full_accuracy > 0:
        shares["accuracy"] = r.accuracy / r.full_accuracy
    low = {k: v for k, v in shares.items() if v < below}
    if not low:
        return None
    what = ", ".join(f"{v:.0%} of the model's {k}" for k, v in low.items())
    return (f"This circuit is not faithful: it keeps {what} on {r.n_examples} examples (below {below:.0%}). "
            f"Ask for faithfulness instead of a sparsity target (CLI: --keep-metric 0.9; Prune page: "
            f"'Faithfulness budget'), or lower the target edge sparsity, or train longer (more steps).")
