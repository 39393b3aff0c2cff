"""`prune --keep-metric / --keep-accuracy / --max-kl`: the CLI part of faithfulness-budget pruning (engine/budget.py)."""

from __future__ import annotations

import argparse

from .budget import Budget, BudgetConfig, BudgetLog
from .config import PruneConfig


def add_budget_args(p: argparse.ArgumentParser) -> None:
    """Flags that turn `prune` into a search for the sparsest circuit meeting a faithfulness budget."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--keep-metric", type=float, default=None, metavar="SHARE",
                   help="return the sparsest circuit found that keeps this share of the full model's task metric "
                        "on the validation split (0.9 = 90%%); --edge-sparsity is then the first run's target")
    g.add_argument("--keep-accuracy", type=float, default=None, metavar="SHARE",
                   help="the same for the model's accuracy")
    g.add_argument("--max-kl", type=float, default=None, metavar="NATS",
                   help="the sparsest circuit found whose mean KL to the model is at most this on validation")
    p.add_argument("--refine-steps", type=int, default=BudgetConfig.refine_steps,
                   help="budget search: steps of each warm-started run at a smaller size")
    p.add_argument("--refines", type=int, default=BudgetConfig.max_refines,
                   help="budget search: warm-started runs after the first (0 = cut the first run's ranking only)")


def budget_of(args: argparse.Namespace) -> Budget | None:
    """The Budget the flags ask for, or None for a plain run to a sparsity target."""
    if args.keep_metric is not None:
        return Budget("metric", args.keep_metric)
    if args.keep_accuracy is not None:
        return Budget("accuracy", args.keep_accuracy)
    if args.max_kl is not None:
        return Budget("kl", args.max_kl)
    return None


def budget_search(args: argparse.Namespace, prune_cfg: PruneConfig,
                  unsupported: bool) -> tuple[Budget | None, BudgetConfig | None]:
    """(budget, search settings) the flags ask for, or (None, None) for a plain run to a sparsity target.

    Raises:
        ValueError: a budget together with settings the search does not support (`unsupported`: torchrun or a
            warm start).
    """
    budget = budget_of(args)
    if budget is None:
        return None, None
    if unsupported:
        raise ValueError("a faithfulness budget (--keep-metric/--keep-accuracy/--max-kl) runs in one process "
                         "with --init open")
    return budget, BudgetConfig(prune=prune_cfg, refine_steps=args.refine_steps, max_refines=args.refines)


def format_frontier(log: BudgetLog, metric_name: str) -> str:
    """The explored sparsity-faithfulness points, smallest circuit first, the returned one marked."""
    assert log.budget is not None
    what = "KL" if log.budget.kind == "kl" else f"share of {metric_name if log.budget.kind == 'metric' else 'accuracy'}"
    lines = [(f"budget: {log.budget.describe(metric_name)} (validation); {log.runs} runs, "
              f"{len(log.frontier)} circuits evaluated"),
             f"{'edges':>7}{'sparsity':>10}{what:>24}{'KL':>9}{'accuracy':>10}  source"]
    order = sorted(range(len(log.frontier)), key=lambda i: (log.frontier[i].n_edges, i))
    for i in order:
        p = log.frontier[i]
        mark = "  <- returned" if i == log.chosen else ("" if p.passed else "  (misses)")
        lines.append(f"{p.n_edges:>7}{p.sparsity:>10.4f}{p.value:>24.3f}{p.kl:>9.4f}{p.accuracy:>10.3f}  "
                     f"{p.source}{mark}")
    return "\n".join(lines)
