"""`python -m engine export-mib | import-mib | mib-score`: MIB's circuit-localisation files and scores (registered by __main__)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from .circuit import Circuit
from .mib import MIB_SIZES, mib_score, read_mib, score_table, write_mib


def add_mib_parsers(sub: Any, common: Callable[[argparse.ArgumentParser], None],
                    task_of: Callable[[argparse.Namespace, Any], Any]) -> None:
    """Register the three subcommands (`common` adds --model/--task; `task_of` builds the task)."""
    p = sub.add_parser("export-mib", help="write a circuit as an MIB circuit-localisation submission (JSON)")
    p.add_argument("--circuit", required=True, help="circuit .safetensors")
    p.add_argument("--out", required=True, help="submission folder; the file goes to OUT/{task}_{model}/importances.json")
    p.add_argument("--task", default=None, help="MIB task name (default: the circuit's task, e.g. ioi)")
    p.add_argument("--model-name", default=None, help="MIB model name, e.g. gpt2 (default: the circuit's model)")
    p.add_argument("--d-model", type=int, default=None, help="the model's width (default: from the circuit's metadata)")
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("import-mib", help="read an MIB circuit JSON (scores and membership of every edge)")
    p.add_argument("--file", required=True, help="MIB circuit .json (.pt pickles are refused)")
    p.add_argument("--model", required=True, help="the model the circuit is of (embedded name, folder or hub id)")
    p.add_argument("--out", required=True, help="circuit .safetensors to write")
    p.set_defaults(func=cmd_import)
    p = sub.add_parser("mib-score", help="faithfulness at MIB's sizes, CPR and CMD as MIB's evaluator computes them")
    common(p)
    p.add_argument("--circuit", required=True, help="circuit .safetensors, or an MIB circuit .json")
    p.add_argument("--split", default="test", choices=["train", "validation", "test"])
    p.add_argument("--ablation", default="interchange", choices=["interchange", "zero", "mean"])
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=lambda args: cmd_score(args, task_of))


def _d_model(circuit: Circuit, given: int | None) -> int:
    if given is not None:
        return given
    try:
        return int(json.loads(circuit.meta["model_config"])["d_model"])
    except (KeyError, TypeError, ValueError, json.JSONDecodeError):
        raise ValueError("the circuit's metadata does not say the model's width; pass --d-model") from None


def cmd_export(args: argparse.Namespace) -> int:
    circuit = Circuit.load(args.circuit)
    task = args.task or circuit.meta.get("task", "")
    model = args.model_name or circuit.meta.get("model", "")
    path = write_mib(circuit, args.out, task, model, _d_model(circuit, args.d_model))
    print(f"wrote {path} ({circuit.graph.n_edges} edges scored, {circuit.n_edges} in the circuit)")
    return 0


def _graph_and_model(name: str):  # noqa: ANN202
    from .scale_cli import model_config
    cfg, graph, _ = model_config(name)
    return cfg, graph


def cmd_import(args: argparse.Namespace) -> int:
    cfg, graph = _graph_and_model(args.model)
    circuit = read_mib(args.file, graph)
    circuit = Circuit(graph, circuit.scores, circuit.keep, None,
                      {**circuit.meta, "model": args.model, "config_hash": cfg.hash(),
                       "model_config": json.dumps(cfg.to_dict())})
    circuit.save(args.out)
    print(f"wrote {args.out} ({graph.n_edges} edges scored, {circuit.n_edges} in the circuit)")
    return 0


def cmd_score(args: argparse.Namespace, task_of: Callable[[argparse.Namespace, Any], Any]) -> int:
    from .weights import load_model
    model = load_model(args.model, device=args.device)
    circuit = (read_mib(args.circuit, model.graph) if args.circuit.endswith((".json", ".pt"))
               else Circuit.load(args.circuit))
    score = mib_score(model, task_of(args, model), circuit, args.split, ablation=args.ablation, sizes=MIB_SIZES)
    print(json.dumps(score.to_dict()) if args.json else score_table(score))
    return 0
