"""Our default Edge Pruning recipe next to the authors' (`--recipe authors`) on one embedded model and task.

    python bench/recipes.py --model ioi-2l --task ioi --runs /tmp/recipes

Prunes with each recipe (`python -m engine prune`, skipped when `<runs>/<recipe>/circuit.safetensors` exists),
then prints one table row per recipe: graph, edges kept, test KL, the task metric (logit difference for IOI)
against the full model's, wall-clock seconds of the pruning loop (from log.json), and the Jaccard overlap of
the two edge sets (the split graph's `tok`/`pos` edges counted as the one-input graph's `input` edge).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import engine  # noqa: E402

RECIPES = {"default": [], "authors": ["--recipe", "authors"]}


def _edges(circuit: engine.Circuit) -> set[str]:
    """Kept edge ids, with tok/pos writers renamed `input` so the two graphs compare."""
    out = set()
    for e in circuit.graph.edges(circuit.keep):
        src, dst = e.split("->", 1)
        out.add(f"{'input' if src in ('tok', 'pos') else src}->{dst}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="ioi-2l")
    ap.add_argument("--task", default="ioi")
    ap.add_argument("--runs", default="runs/recipes", help="folder of the two runs (re-used when present)")
    args = ap.parse_args()
    rows, sets = [], {}
    for name, flags in RECIPES.items():
        out = Path(args.runs) / name
        if not (out / "circuit.safetensors").is_file():
            subprocess.run([sys.executable, "-m", "engine", "prune", "--model", args.model, "--task", args.task,
                            "--out", str(out), *flags], check=True, cwd=ROOT, env={**os.environ})
        circuit = engine.Circuit.load(out / "circuit.safetensors")
        model = engine.load_model(args.model, device="cpu", split_embeddings=circuit.graph.split_embeddings)
        task = engine.get_task(args.task, model.tokenizer, n=256, seed=0, n_ctx=model.cfg.n_ctx)
        r = engine.evaluate(model, task, circuit, split="test")
        seconds = json.loads((out / "log.json").read_text())["elapsed_s"]
        graph = "split (tok, pos)" if circuit.graph.split_embeddings else "one input"
        rows.append((name, graph, circuit.n_edges, circuit.graph.n_edges, r, seconds))
        sets[name] = _edges(circuit)
    a, b = sets.values()
    jac = len(a & b) / max(1, len(a | b))
    print(f"| recipe | graph | edges kept | test KL | {rows[0][4].metric_name} (model) | accuracy | seconds |")
    print("|---|---|---|---|---|---|---|")
    for name, graph, n, total, r, sec in rows:
        print(f"| {name} | {graph} | {n} of {total} | {r.kl:.4f} | {r.metric:.3f} ({r.full_metric:.3f}) | "
              f"{r.accuracy:.1%} | {sec:.0f} |")
    print(f"\nJaccard of the two edge sets: {jac:.3f} ({len(a & b)} shared of {len(a | b)}); load average "
          f"{os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
