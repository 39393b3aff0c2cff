"""Time `python -m engine prune` on the embedded IOI model with default settings, and score the circuit it writes.

    python bench/prune_ioi.py                          # the CLI as a user runs it (its own thread choice)
    python bench/prune_ioi.py --threads 1 2            # force intra-op threads (OMP_NUM_THREADS), one run each
    python bench/prune_ioi.py --model /tmp/other-ioi --steps 2000
    python bench/prune_ioi.py --steps 500 --lr-lambdas 1.0   # settings other than the defaults

Each run is the CLI in a subprocess: wall-clock and CPU seconds (user + sys) are of that whole command
(start-up, model load, task generation, pruning, validation, writing files). Its circuit is then evaluated
on the task's test split: as the CLI discretised it, and, when that keeps more edges than the target allows,
cut to the target (the top round-down((1 - target) * edges) scores). "LD kept" = circuit logit difference /
full model's. The load average is printed with each row: the machine is shared, so wall time depends on it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine import Circuit, evaluate, get_task, load_model  # noqa: E402


def run_cli(model: str, task: str, out: Path, threads: str, options: list[str]) -> tuple[float, float]:
    """Run the prune command; returns (wall seconds, CPU seconds of the child)."""
    cmd = [sys.executable, "-m", "engine", "prune", "--model", model, "--task", task, "--out", str(out), *options]
    env = {**os.environ} | ({} if threads == "default" else {"OMP_NUM_THREADS": threads})
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def row(label: str, circuit: Circuit, r, wall: float, cpu: float, steps: int, run: str, load: float) -> str:  # noqa: ANN001
    kept = r.metric / r.full_metric if r.full_metric else float("nan")
    return (f"| {label} | {run} | {wall:.1f} | {cpu:.1f} | {steps} | {circuit.n_edges} / {circuit.graph.n_edges} | "
            f"{circuit.sparsity:.3f} | {r.kl:.3f} | {r.metric:.2f} / {r.full_metric:.2f} ({kept:.0%}) | "
            f"{r.accuracy:.0%} | {load:.1f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="ioi-2l")
    ap.add_argument("--task", default="ioi")
    ap.add_argument("--edge-sparsity", type=float, default=0.95)
    ap.add_argument("--steps", type=int, default=None, help="default: the CLI's (PruneConfig.n_steps)")
    ap.add_argument("--lr-lambdas", type=float, default=None, help="default: the CLI's (PruneConfig.lr_lambdas)")
    ap.add_argument("--device", default="cpu", help="passed to the CLI (cpu, cuda, mps)")
    ap.add_argument("--threads", nargs="*", default=["default"], help="'default' (the CLI's choice) or a count")
    args = ap.parse_args()
    torch.set_num_threads(1)  # this process only evaluates
    model = load_model(args.model, device="cpu")
    task = get_task(args.task, model.tokenizer, n=256, seed=0, n_ctx=model.cfg.n_ctx, bos_id=model.bos_id)
    budget = math.floor(round((1 - args.edge_sparsity) * model.graph.n_edges, 6))  # most edges at the target
    print(f"machine: {os.cpu_count()} CPU cores, torch {torch.__version__}; model {args.model} "
          f"({model.graph.n_edges} edges, <= {budget} at sparsity {args.edge_sparsity}), task {args.task}\n")
    options = ["--device", args.device, "--edge-sparsity", str(args.edge_sparsity)] + (["--steps", str(args.steps)] if args.steps else []) \
        + (["--lr-lambdas", str(args.lr_lambdas)] if args.lr_lambdas else [])
    print(f"python -m engine prune --model {args.model} --task {args.task} --out DIR {' '.join(options)}\n")
    print("| circuit | device, threads | wall s | CPU s | steps | edges kept / total | sparsity | KL | "
          "logit diff circuit / full (kept) | accuracy | load avg |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for threads in args.threads:
        load = os.getloadavg()[0]
        with tempfile.TemporaryDirectory(prefix="ioi_bench_") as tmp:
            out = Path(tmp) / "run"
            wall, cpu = run_cli(args.model, args.task, out, threads, options)
            steps = len(json.loads((out / "log.json").read_text())["steps"])
            circuit = Circuit.load(out / "circuit.safetensors")
        cuts = [("as discretised", circuit)] + ([(f"top {budget}", circuit.top_n(budget))]
                                                if circuit.n_edges > budget else [])
        for label, c in cuts:
            run = f"{args.device}, {threads}" if args.device == "cpu" else args.device
            print(row(label, c, evaluate(model, task, c), wall, cpu, steps, run, load), flush=True)


if __name__ == "__main__":
    main()
