"""`python -m engine prune|evaluate|info`: argparse -> engine calls; the one place that prints and exits."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

from . import (Circuit, PruneConfig, embedded_models, evaluate, get_task, load_jsonl_task, load_model, prune)
from .budget import prune_to_budget, unfaithful_note
from .budget_cli import add_budget_args, budget_search, format_frontier
from .prune import check_task
from .compare_cli import add_compare_parser
from .mib_cli import add_mib_parsers
from . import distributed
from .runtime import idle_cores, is_small_model
from .shortfall import advice, target_miss
from .graph import count_edges
from .methods.warmstart import INITS
from .scale_cli import (add_graph_arg, add_memory_args, add_prune_args, load_for_prune, memory_table, model_config,
                        wants_split)
from .tasks import TASKS


def _common(p: argparse.ArgumentParser, data: bool = True) -> None:
    p.add_argument("--model", required=True, help=f"embedded name ({', '.join(embedded_models()) or 'none'}), "
                   "local save_pretrained folder, or hub id")
    p.add_argument("--device", default=None, help="cuda, mps or cpu (default: best available)")
    add_graph_arg(p)
    if data:
        src = p.add_mutually_exclusive_group(required=True)
        src.add_argument("--data", help="JSONL file of clean/corrupted pairs (format: README, 'Custom data (JSONL)')")
        src.add_argument("--task", help=f"built-in task: {', '.join(TASKS)}")
        p.add_argument("--n-examples", "--n", dest="n", type=int, default=256,
                       help="built-in tasks: train examples to generate (--n is short for it, except under torchrun, "
                            "whose parser takes --n for its own options)")
        p.add_argument("--task-seed", type=int, default=0)


def _tune_threads(model) -> None:  # noqa: ANN001
    """A small model on CPU uses only the idle cores (engine.runtime.idle_cores), unless OMP_NUM_THREADS says
    otherwise: pruning the embedded IOI model (1000 steps) took 47 s wall on 2 threads and 67 s on one on
    the idle 2-core machine, but 452 s on 2 threads and 148 s on one with other jobs running (load 3.2)."""
    if model.device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ and is_small_model(model.cfg):
        torch.set_num_threads(min(torch.get_num_threads(), idle_cores()))


def _task(args: argparse.Namespace, model):  # noqa: ANN001, ANN202
    if model.tokenizer is None:
        raise ValueError(f"model {args.model!r} has no tokenizer files; cannot read text data")
    if args.data:
        return load_jsonl_task(args.data, model.tokenizer, model.cfg.n_ctx, bos_id=model.bos_id)
    return get_task(args.task, model.tokenizer, n=args.n, seed=args.task_seed, n_ctx=model.cfg.n_ctx,
                    bos_id=model.bos_id)


def prune_config(args: argparse.Namespace) -> PruneConfig:
    """The PruneConfig of `prune`'s flags: our defaults, or --recipe authors (PruneConfig.authors()) where a flag
    is not given."""
    given = {k: v for k, v in (("n_steps", args.steps), ("batch_size", args.batch_size), ("warmup_steps", args.warmup),
                               ("lr_gates", args.lr), ("lr_lambdas", args.lr_lambdas)) if v is not None}
    common = dict(edge_sparsity=args.edge_sparsity, node_sparsity=args.node_sparsity, seed=args.seed,
                  ablation=args.ablation, **given)
    return PruneConfig.authors(**common) if args.recipe == "authors" else PruneConfig(**common)


def cmd_prune(args: argparse.Namespace) -> int:
    from tqdm import tqdm
    cfg = prune_config(args)
    ctx, model = load_for_prune(args)  # torchrun: joins the process group, FSDP-shards the model
    _tune_threads(model)
    task = _task(args, model)
    out = _writable_folder(Path(args.out))
    check_task(model, task, ("train", "validation"))   # what could fail after the run fails now instead
    if note := task.meta.get("splits_note"):
        print(f"note: {note}", file=sys.stderr)
    init = None
    if args.init != "open":  # warm start from attribution scores (the paper's suggested hybrid)
        from .methods.warmstart import EdgePruningConfig, warm_start
        warm = EdgePruningConfig(prune=cfg, init=args.init)
        cfg, init = warm.prune_config(), warm_start(model, task, warm)
    budget, search = budget_search(args, cfg, ctx.enabled or init is not None)
    total = cfg.n_steps if search is None else cfg.n_steps + search.max_refines * search.refine_steps
    bar = tqdm(total=total, desc="pruning", unit="step", disable=not ctx.is_main)

    def on_step(s) -> None:  # noqa: ANN001
        bar.n = s.step + 1
        bar.set_postfix(kl=f"{s.kl:.4f}", sparsity=f"{s.edge_sparsity:.3f}", target=f"{s.edge_target:.3f}")
        bar.refresh()

    if search is None:
        circuit, log = prune(model, task, cfg, on_step=on_step, checkpoint_dir=out, init_log_alpha=init)
    else:  # the sparsest circuit meeting the budget on validation (engine/budget.py); no checkpoint resume
        circuit, log = prune_to_budget(model, task, budget, search, on_step=on_step)
    bar.close()
    circuit = Circuit(circuit.graph, circuit.scores, circuit.keep, circuit.node_scores,
                      {**circuit.meta, "name": out.name, "init": args.init})
    if ctx.is_main:  # the result is on disk before anything else can fail (distributed: rank 0 writes)
        circuit.save(out / "circuit.safetensors")
        circuit.save_edges_json(out / "edges.json")
        (out / "log.json").write_text(log.to_json())
    try:
        result = evaluate(model, task, circuit, split="validation")
    except Exception as e:  # noqa: BLE001 - any failure here must say where the result is
        raise ValueError(f"evaluating the circuit on the validation split failed ({type(e).__name__}: {e}); "
                         f"the circuit is saved in {out / 'circuit.safetensors'} (and edges.json, log.json)") from e
    finally:
        distributed.teardown()
    if not ctx.is_main:
        return 0
    circuit = Circuit(circuit.graph, circuit.scores, circuit.keep, circuit.node_scores,
                      {**circuit.meta, "metrics": json.dumps(result.to_dict())})
    circuit.save(out / "circuit.safetensors")
    (out / "circuit.json").write_text(json.dumps({**circuit.meta, "eval_validation": result.to_dict()}, indent=1))
    for w in log.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(f"edges kept {circuit.n_edges} / {circuit.graph.n_edges} (sparsity {circuit.sparsity:.4f}, target "
          f"{cfg.edge_sparsity:g}); "
          f"validation KL {result.kl:.4f}, {result.metric_name} {result.metric:.3f} (model {result.full_metric:.3f}), "
          f"accuracy {result.accuracy:.3f} (model {result.full_accuracy:.3f}); {log.elapsed_s:.1f} s")
    if search is not None:
        print(format_frontier(log, result.metric_name))
    note = unfaithful_note(result)
    if note:
        print(f"warning: {note}", file=sys.stderr)
    print(f"wrote {out / 'circuit.safetensors'}, edges.json, circuit.json, log.json"
          + (", checkpoint.safetensors" if search is None else ""))
    if search is None and (miss := target_miss(cfg.edge_sparsity, circuit.n_edges, circuit.graph.n_edges)) is not None:
        last = log.steps[-1] if log.steps else None  # resumed runs log only their own steps: count from .step
        text = advice(miss, cfg.n_steps, cfg.lr_lambdas, last.step + 1 if last else 0, last and last.edge_target)
        print(f"warning: {text}", file=sys.stderr)
    return 0


def _writable_folder(out: Path) -> Path:
    """`out`, created, after writing and removing a probe file in it (a run must not end unable to save)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ValueError(f"cannot write to the output folder {out}: {e.strerror or e}") from None
    return out


def _load_circuit(spec: str, model) -> Circuit:  # noqa: ANN001
    if spec == "full":
        return Circuit.full(model.graph)
    if spec == "empty":
        return Circuit.empty(model.graph)
    if spec.endswith(".json"):
        return Circuit.load_edges_json(spec)
    return Circuit.load(spec)


def cmd_evaluate(args: argparse.Namespace) -> int:
    model = load_model(args.model, device=args.device, split_embeddings=wants_split(args))
    _tune_threads(model)
    task = _task(args, model)
    circuit = _load_circuit(args.circuit, model)
    if args.threshold is not None:
        circuit = circuit.threshold(args.threshold)
    elif args.edges is not None:
        circuit = circuit.top_n(args.edges)
    elif args.sparsity is not None:
        circuit = circuit.with_sparsity(args.sparsity)
    if args.prune_dangling:
        circuit = circuit.prune_dangling()
    result = evaluate(model, task, circuit, split=args.split)
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        for k, v in result.to_dict().items():
            if k == "faithfulness_na":
                continue
            if k == "faithfulness" and v is None:
                v = result.faithfulness_na   # n/a and why (the KL above is the measure then)
            print(f"{k:>14}: {v:.4f}" if isinstance(v, float) else f"{k:>14}: {v}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    cfg, g, n_params = model_config(args.model, wants_split(args))  # Llama family: config.json only, no weights read
    print(f"model        {args.model} ({cfg.architecture}, config hash {cfg.hash()})")
    print(f"layers       {cfg.n_layers} x {cfg.n_heads} heads ({cfg.kv_heads} k/v), d_model {cfg.d_model}, "
          f"d_mlp {cfg.d_mlp}, vocab {cfg.d_vocab}, context {cfg.n_ctx}")
    print(f"parameters   {n_params / 1e6:.2f} M")
    print(f"graph        {g.n_src} writers, {g.n_dst} readers, {len(g.nodes)} nodes, {g.n_edges} edges "
          f"(closed form {count_edges(cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, len(g.input_nodes))})")
    print(memory_table(args, cfg))
    return 0


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m engine", description="Circuit Explorer engine")
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prune", help="find a circuit with Edge Pruning")
    _common(p)
    p.add_argument("--out", required=True, help="output folder (circuit, metadata, checkpoints)")
    p.add_argument("--edge-sparsity", type=float, default=0.95)
    p.add_argument("--node-sparsity", type=float, default=None)
    p.add_argument("--recipe", default="default", choices=["default", "authors"],
                   help="default: this project's (README, Defaults); authors: the Edge Pruning authors' released "
                        "recipe (3,000 steps, AdamW 0.8, sampled-gate sparsity, per-tensor read-out, split graph; "
                        "engine/recipe.py). Flags given below override either")
    p.add_argument("--steps", type=int, default=None, help=f"default {PruneConfig.n_steps} (authors: 3000)")
    p.add_argument("--warmup", type=int, default=None, help="target ramp steps (default 80%% of --steps; authors: "
                   "2500 of 3000)")
    p.add_argument("--batch-size", type=int, default=None, help="default 32")
    p.add_argument("--lr", type=float, default=None, help=f"learning rate of the gate logits (default "
                   f"{PruneConfig.lr_gates}; authors: 0.8)")
    p.add_argument("--lr-lambdas", type=float, default=None, help=f"learning rate of the multipliers (default "
                   f"{PruneConfig.lr_lambdas}; authors: 0.8)")
    p.add_argument("--ablation", default="interchange", choices=["interchange", "zero", "mean"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init", default="open", choices=list(INITS),
                   help="gate initialisation: all open (the authors) or warm-started from EAP, EAP-IG (the field's: "
                        "input embeddings interpolated, Hanna et al. 2024) or eap-ig-gates (our gate-path variant) scores")
    add_prune_args(p)
    add_budget_args(p)
    p.set_defaults(func=cmd_prune)
    p = sub.add_parser("evaluate", help="evaluate a circuit (or the full / empty baselines)")
    _common(p)
    p.add_argument("--circuit", required=True, help="circuit .safetensors, edges.json, 'full' or 'empty'")
    sel = p.add_mutually_exclusive_group()
    sel.add_argument("--threshold", type=float)
    sel.add_argument("--edges", type=int)
    sel.add_argument("--sparsity", type=float)
    p.add_argument("--prune-dangling", action="store_true")
    p.add_argument("--split", default="test", choices=["train", "validation", "test"])
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_evaluate)
    p = sub.add_parser("info", help="architecture, graph size, memory estimate")
    _common(p, data=False)
    add_memory_args(p)
    p.set_defaults(func=cmd_info)
    add_compare_parser(sub, _common, _task)
    add_mib_parsers(sub, _common, _task)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, KeyError, FileNotFoundError, torch.cuda.OutOfMemoryError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
