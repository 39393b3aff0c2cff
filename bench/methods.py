"""Every circuit-discovery method on every embedded task: faithfulness at matched edge counts, MIB CPR/CMD, time.

    python bench/methods.py                      # embedded models (assets/models) + Tracr programs
    python bench/methods.py --steps 300 --warm-start --only ioi-2l

For each (model, task): every method runs on the train split; n = round((1 - sparsity) * edges) is the
matched size (Tracr: its ground truth's size) at which each method's top-n edges are scored on the test
split: f = MIB faithfulness of the task metric and the KL to the model (squared error for Tracr's read-out
tasks), next to random circuits of size n (mean +- std over 5 draws); CPR/CMD over MIB's sizes; "own
edges" is each method's own selection. With --warm-start, Edge Pruning from all-open gates and from EAP
scores are compared at equal step budgets, target sparsity and edge count. One thread; wall-clock seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.faithfulness import MIB_SIZES, curve, random_baseline  # noqa: E402
from engine.methods import METHODS, make_config  # noqa: E402
from engine.tasks import get_task  # noqa: E402
from engine.weights import embedded_models, load_model  # noqa: E402

TASKS_OF = {"ioi": ["ioi"], "greater": ["greater_than"], "pronoun": ["gendered_pronoun"],
            "boolean": ["boolean_instruction", "boolean_fewshot"]}


def workloads(only: str | None, n: int, sparsity: float):  # noqa: ANN201
    """(label, model, task, ablation, target sparsity, ground truth or None) for each embedded model's tasks,
    then each Tracr program (zero ablation and its ground truth's sparsity, as their known circuits assume)."""
    for name, folder in embedded_models().items():
        if only and only.split("/")[0] not in name:
            continue
        model = load_model(name, device="cpu")
        log = folder / "train_log.json"
        info = json.loads(log.read_text()) if log.is_file() else {}
        tasks = info.get("tasks") or (info.get("recipe") or {}).get("tasks")
        tasks = tasks or next((t for k, t in TASKS_OF.items() if name.startswith(k)), [])
        for t in tasks:
            if only and only not in f"{name}/{t}":
                continue
            task = get_task(t, model.tokenizer, n=n, n_ctx=model.cfg.n_ctx, bos_id=model.bos_id)
            yield f"{name}/{t}", model, task, "interchange", sparsity, None
    try:
        from engine.tracr import load_tracr, tracr_models
    except ImportError:
        return
    for name in tracr_models():
        if only and only not in f"tracr-{name}":
            continue
        model, truth, task = load_tracr(name, n_train=n)
        yield f"tracr-{name}", model, task, "zero", 1.0 - truth.n_edges / model.graph.n_edges, truth


def _timed(method: str, model, task, cfg):  # noqa: ANN001, ANN202
    t0 = time.perf_counter()
    circuit = METHODS[method](model, task, cfg)
    return circuit, time.perf_counter() - t0


def at_size(model, task, circuit, n: int, ablation: str) -> tuple[float, float]:  # noqa: ANN001
    """(f, KL) of the circuit's top-n edges on the test split."""
    c = curve(model, task, circuit, sizes=[(n + 0.5) / model.graph.n_edges], ablation=ablation)
    return c.faithfulness[0], c.kl[0]


def bench_one(label: str, model, task, ablation: str, sparsity: float, truth, args: argparse.Namespace) -> None:  # noqa: ANN001
    n_all = model.graph.n_edges
    ep_opts = dict(n_steps=args.steps, edge_sparsity=sparsity, ablation=ablation, lr_gates=args.lr,
                   lr_lambdas=args.lr)
    runs = {"edge-pruning": ("edge-pruning", make_config("edge-pruning", **ep_opts)),
            "edge-pruning+eap": ("edge-pruning", make_config("edge-pruning", init="eap", **ep_opts)),
            "eap": ("eap", make_config("eap", ablation=ablation, sparsity=0.5)),
            # the field's EAP-IG interpolates a corrupted input; under zero/mean ablation its activations variant
            "eap-ig": (ig := "eap-ig" if ablation == "interchange" else "eap-ig-activations",
                       make_config(ig, ablation=ablation, sparsity=0.5)),
            "eap-ig-gates": ("eap-ig-gates", make_config("eap-ig-gates", ablation=ablation, sparsity=0.5)),
            "acdc": ("acdc", make_config("acdc", ablation=ablation, threshold=args.acdc_threshold)),
            "random": ("random", make_config("random", sparsity=0.5))}
    done = {}
    for key, (method, cfg) in runs.items():
        try:
            done[key] = _timed(method, model, task, cfg)
        except ValueError as e:
            print(f"  {key}: failed: {e}")
    n = max(1, round((1 - sparsity) * n_all))
    rb = random_baseline(model, task, sizes=[(n + 0.5) / n_all, 1.0], draws=5, ablation=ablation)
    print(f"\n## {label}: {n_all} edges, matched size n = {n} ({100 * n / n_all:.1f}%), ablation {ablation}, "
          f"metric {task.metric}; random at n: f = {rb.mean[0]:.3f} +- {rb.std[0]:.3f}")
    print("| method | seconds | own edges | f @ n | KL @ n | CPR | CMD | truth in top-n |\n"
          "|---|---:|---:|---:|---:|---:|---:|---:|")
    for key, (circuit, sec) in done.items():
        f, kl = at_size(model, task, circuit, n, ablation)
        mib = curve(model, task, circuit, MIB_SIZES, ablation=ablation)
        cover = "-" if truth is None else f"{len(set(truth.edges()) & set(circuit.top_n(n).edges()))}/{truth.n_edges}"
        print(f"| {key} | {sec:.1f} | {circuit.n_edges} | {_num(f)} | {kl:.4f} | {_num(mib.cpr)} | {_num(mib.cmd)} | {cover} |")
    sys.stdout.flush()


def warm_start(label: str, model, task, ablation: str, sparsity: float, args: argparse.Namespace) -> None:  # noqa: ANN001
    """Edge Pruning from open gates vs from EAP scores, at equal step budgets and the same edge count."""
    n = max(1, round((1 - sparsity) * model.graph.n_edges))
    print(f"\n### warm start, {label}: target sparsity {sparsity:.3f} (n = {n} edges)")
    print("| steps | open: f @ n | open: KL @ n | open: own edges | eap-init: f @ n | eap-init: KL @ n | "
          "eap-init: own edges |\n|---:|---:|---:|---:|---:|---:|---:|")
    for steps in args.budgets:
        row = [str(steps)]
        for init in ("open", "eap"):
            cfg = make_config("edge-pruning", n_steps=steps, edge_sparsity=sparsity, ablation=ablation,
                              init=init, lr_gates=args.lr, lr_lambdas=args.lr)
            try:
                circuit = METHODS["edge-pruning"](model, task, cfg)
                f, kl = at_size(model, task, circuit, n, ablation)
                row += [_num(f), f"{kl:.4f}", str(circuit.n_edges)]
            except ValueError as e:
                row += ["failed", "-", str(e)[:40]]
        print("| " + " | ".join(row) + " |")
        sys.stdout.flush()


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300, help="Edge Pruning steps")
    ap.add_argument("--sparsity", type=float, default=0.9, help="Edge Pruning target (matched size)")
    ap.add_argument("--lr", type=float, default=0.1, help="Edge Pruning learning rates (gates and multipliers)")
    ap.add_argument("--acdc-threshold", type=float, default=0.01)
    ap.add_argument("--n", type=int, default=128, help="train examples per task (test: n // 4)")
    ap.add_argument("--only", default=None, help="substring of the workload names to run")
    ap.add_argument("--warm-start", action="store_true", help="also run the warm-start comparison")
    ap.add_argument("--budgets", type=int, nargs="+", default=[25, 50, 100, 200])
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    if not embedded_models():
        print("no embedded models in assets/models yet: running the Tracr programs only")
    for label, model, task, ablation, sparsity, truth in workloads(args.only, args.n, args.sparsity):
        bench_one(label, model, task, ablation, sparsity, truth, args)
        if args.warm_start:
            warm_start(label, model, task, ablation, sparsity, args)


if __name__ == "__main__":
    main()
