"""`python -m engine compare-methods`: the argparse part of the method comparison (prints; registered by __main__)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .compare import PER_SIZE, PerSizeConfig, compare_methods, default_runs, format_table, sizes_from_sparsities
from .config import PruneConfig
from .faithfulness import MIB_SIZES
from .methods import METHODS, make_config
from .methods.warmstart import INITS
from .methods.export import save_scores_json
from .scale_cli import wants_split
from .weights import load_model

DEFAULT_SPARSITIES = [round(1.0 - s, 6) for s in MIB_SIZES if s < 1.0]


def add_compare_parser(sub: Any, common: Callable[[argparse.ArgumentParser], None],
                       task_of: Callable[[argparse.Namespace, Any], Any]) -> None:
    """Register `compare-methods` on the engine CLI's subparsers (`common` adds --model/--task; `task_of` builds it)."""
    p = sub.add_parser("compare-methods", help="every method on one model and task: MIB faithfulness, CPR/CMD, time")
    common(p)
    p.add_argument("--methods", default="edge-pruning,eap,eap-ig,acdc,random",
                   help="comma-separated (default %(default)s), from: " + "; ".join(
                       f"{name}: {m.description}" for name, m in METHODS.items()).replace("%", "%%"))
    p.add_argument("--sparsities", type=float, nargs="+", default=DEFAULT_SPARSITIES,
                   help="circuit sparsities to score every ranking at (default: MIB's 0.1%%..50%% of edges kept)")
    p.add_argument("--split", default="test", choices=["train", "validation", "test"])
    p.add_argument("--steps", type=int, default=300, help="edge-pruning: optimiser steps")
    p.add_argument("--edge-sparsity", type=float, default=0.95, help="edge-pruning target; EAP/EAP-IG/random selection")
    p.add_argument("--lr", type=float, default=None, help="edge-pruning: learning rate of the gate logits "
                   f"(default {PruneConfig.lr_gates}, as prune's --lr)")
    p.add_argument("--lr-lambdas", type=float, default=None, help="edge-pruning: learning rate of the multipliers "
                   f"(default {PruneConfig.lr_lambdas}, as prune's --lr-lambdas)")
    p.add_argument("--init", default="open", choices=list(INITS), help="edge-pruning gate initialisation ("
                   "eap-ig: the field's EAP-IG, input embeddings interpolated; eap-ig-gates: our gate-path variant)")
    p.add_argument("--per-size", action="store_true",
                   help="also score Edge Pruning as MIB does: a circuit trained for each size (largest first, each "
                        "run warm-started from the previous size), plain and warm-started from EAP-IG")
    p.add_argument("--steps-next", type=int, default=PerSizeConfig.steps_next,
                   help="--per-size: steps of each run after the first (the first runs --steps)")
    p.add_argument("--ig-steps", type=int, default=5, help="eap-ig, eap-ig-activations, eap-ig-gates: interpolation "
                   "steps m (the EAP-IG paper: 5)")
    p.add_argument("--acdc-threshold", type=float, default=0.01, help="acdc: KL threshold (nats)")
    p.add_argument("--random-draws", type=int, default=5)
    p.add_argument("--out", default=None, help="folder for each method's circuit (.safetensors) and scores JSON")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON instead of a table")
    p.set_defaults(func=lambda args: cmd_compare(args, task_of))


def _options(args: argparse.Namespace) -> dict[str, dict]:
    keep = args.edge_sparsity if args.edge_sparsity < 1 else 0.99
    lr = {k: v for k, v in (("lr_gates", args.lr), ("lr_lambdas", args.lr_lambdas)) if v is not None}
    return {"edge-pruning": {"n_steps": args.steps, "edge_sparsity": args.edge_sparsity, "init": args.init, **lr},
            "eap": {"sparsity": keep}, **{m: {"sparsity": keep, "steps": args.ig_steps}
                                          for m in ("eap-ig", "eap-ig-activations", "eap-ig-gates")},
            "acdc": {"threshold": args.acdc_threshold}, "random": {"sparsity": keep}}


def cmd_compare(args: argparse.Namespace, task_of: Callable[[argparse.Namespace, Any], Any]) -> int:
    names = [n.strip() for n in args.methods.split(",") if n.strip()]
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {sorted(METHODS)}")
    model = load_model(args.model, device=args.device, split_embeddings=wants_split(args))
    task = task_of(args, model)
    runs = default_runs(names, **_options(args))
    if args.per_size:
        ep = {k: v for k, v in _options(args)["edge-pruning"].items() if k != "init"}
        runs += [(f"ep per size ({init})", PER_SIZE, PerSizeConfig(make_config("edge-pruning", **ep, init=init),
                                                                   args.steps_next)) for init in ("open", "eap-ig")]
    cmp = compare_methods(model, task, runs, sizes_from_sparsities(args.sparsities), args.split, args.random_draws)
    if args.out:
        out = Path(args.out)
        for r in cmp.runs:
            r.circuit.save(out / f"{r.label}.safetensors")
            save_scores_json(r.circuit, out / f"{r.label}.scores.json")
        (out / "comparison.json").write_text(json.dumps(cmp.to_dict(), indent=1))
    print(json.dumps(cmp.to_dict()) if args.json else format_table(cmp))
    if args.out:
        print(f"wrote {len(cmp.runs)} circuits and score files to {args.out}")
    return 0 if cmp.runs else 2
