"""The faithful defaults, swept: every embedded model and task pruned with the budget search the app uses by default
(engine.budget_spec.DEFAULT_BUDGET / DEFAULT_SEARCH), judged on the TEST split. Prints a markdown table
(assets/MODELS.md has the last one) with the machine's load average; `--out DIR` keeps the circuits.

    python bench/budget_defaults.py [--only boolean-4l] [--out /tmp/sweep]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import engine  # noqa: E402
from engine.budget import prune_to_budget  # noqa: E402
from engine.budget_spec import DEFAULT_BUDGET, DEFAULT_SEARCH  # noqa: E402

PAIRS = [("ioi-2l", "ioi"), ("ioi-2l", "ioi_t1"), ("greater-than-2l", "greater_than"),
         ("pronoun-2l", "gendered_pronoun"), ("boolean-4l", "boolean_instruction"), ("boolean-4l", "boolean_fewshot")]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default=None, help="one model name")
    ap.add_argument("--out", default=None)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"budget {DEFAULT_BUDGET.describe()}, search {DEFAULT_SEARCH.prune.n_steps} + {DEFAULT_SEARCH.max_refines} x "
          f"{DEFAULT_SEARCH.refine_steps} steps, margin {DEFAULT_SEARCH.margin}, {args.threads} thread(s)", flush=True)
    print("| model | task | edges kept / all | test metric share | test accuracy (model) | validation share | "
          "runs | wall s | CPU s | load (1 min) |\n|---|---|---|---|---|---|---|---|---|---|", flush=True)
    for name, task_name in PAIRS:
        if args.only and name not in args.only.split(","):
            continue
        model = engine.load_model(name, device="cpu")
        task = engine.get_task(task_name, model.tokenizer, n=256, seed=0, n_ctx=model.cfg.n_ctx, bos_id=model.bos_id)
        t0, c0 = time.perf_counter(), time.process_time()
        circuit, log = prune_to_budget(model, task, DEFAULT_BUDGET, DEFAULT_SEARCH)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        r = engine.evaluate(model, task, circuit, split="test")
        val = log.frontier[log.chosen].value
        print(f"| {name} | {task_name} | {circuit.n_edges} / {model.graph.n_edges} | {r.metric / r.full_metric:.3f} | "
              f"{r.accuracy:.1%} ({r.full_accuracy:.1%}) | {val:.3f} | {log.runs} | {wall:.0f} | {cpu:.0f} | "
              f"{os.getloadavg()[0]:.1f} |", flush=True)
        if args.out:
            Path(args.out).mkdir(parents=True, exist_ok=True)
            circuit.save(Path(args.out) / f"{name}--{task_name}.safetensors")


if __name__ == "__main__":
    main()
