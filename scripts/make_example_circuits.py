"""Prune every embedded model on its task(s) and save the example circuits the app shows first.

    python scripts/make_example_circuits.py [--out assets/circuits] [--steps 300] [--models ioi-2l ...]

Writes `<model>--<task>.safetensors` plus a README.md table with the command, the config and the
measured faithfulness, so the Circuit and Compare pages show real circuits before anything is pruned
(boolean models give the instruction vs few-shot pair for Compare).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import engine  # noqa: E402

TASKS = {"ioi": ["ioi"], "greater": ["greater_than"], "pronoun": ["gendered_pronoun"],
         "boolean": ["boolean_instruction", "boolean_fewshot"]}
SPARSITY = 0.9  # the embedded models have 110-606 edges; 0.9 keeps a readable, faithful circuit


def tasks_for(model: str) -> list[str]:
    return next((t for key, t in TASKS.items() if key in model.lower()), [])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "assets" / "circuits"))
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--n", type=int, default=256, help="training examples per task")
    ap.add_argument("--models", nargs="*", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)  # small models: one intra-op thread is fastest
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.models or list(engine.embedded_models()):
        model = engine.load_model(name, device="cpu")
        for task_name in tasks_for(name):
            task = engine.get_task(task_name, model.tokenizer, n=args.n, seed=0, n_ctx=model.cfg.n_ctx)
            cfg = engine.PruneConfig(n_steps=args.steps, batch_size=32, edge_sparsity=SPARSITY)
            t0 = time.time()
            circuit, log = engine.prune(model, task, cfg)
            res = engine.evaluate(model, task, circuit)
            stem = f"{name}--{task_name}"
            circuit = replace(circuit, meta={**circuit.meta, "name": stem,
                                             "metrics": json.dumps({"kl": res.kl, "accuracy": res.accuracy,
                                                                    "metric": res.metric, "full_metric": res.full_metric})})
            circuit.save(out / f"{stem}.safetensors")
            rows.append(f"| {stem} | {circuit.n_edges} / {circuit.graph.n_edges} | {res.kl:.4f} | "
                        f"{res.accuracy:.0%} (full {res.full_accuracy:.0%}) | {time.time() - t0:.0f} s |")
            print(rows[-1], *log.warnings, flush=True)
    readme = out / "README.md"  # rows of models not rerun are kept
    old = [r for r in (readme.read_text().splitlines() if readme.is_file() else []) if r.startswith("| ")
           and not r.startswith("| circuit") and r.split(" | ")[0][2:] not in {x.split(" | ")[0][2:] for x in rows}]
    readme.write_text(
        "# Example circuits\n\nMade by `python scripts/make_example_circuits.py [--models NAME ...]` (Edge Pruning, "
        f"{args.steps} steps, batch 32, target edge sparsity {SPARSITY}, seed 0, {args.n} training examples; "
        "evaluated on the task's test split).\n\n| circuit | edges | KL (nats) | accuracy | time |\n|---|---|---|---|---|\n"
        + "\n".join(sorted(old + rows)) + "\n")

if __name__ == "__main__":
    main()
