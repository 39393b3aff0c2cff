"""Run Edge Pruning on the shipped Tracr programs and compare each found circuit with the ground truth.

    python scripts/tracr_recovery.py                          # every shipped program, both graphs, seeds 0-2
    python scripts/tracr_recovery.py hist --seeds 0 --steps 500

Prints one markdown row per (program, graph, seed): edges found, necessary (zero ablation), whether the found
set is exactly the necessary one, necessary edges missed, edges kept beyond them, inputs whose outputs differ
from tracr's (all lengths, padded into one batch), steps, seconds.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.prune import prune  # noqa: E402
from engine.tasks.tracr import mismatches  # noqa: E402
from engine.tracr import (load_ground_truth, load_reference, load_tracr, tracr_models,  # noqa: E402
                          tracr_prune_config)


def run(name: str, split: bool, seed: int, steps: int | None) -> str:
    model, _, task = load_tracr(name, split_embeddings=split)
    necessary = load_ground_truth(name, model.graph, "necessary", "zero")
    t0 = time.perf_counter()
    cfg = tracr_prune_config(name)
    found, log = prune(model, task, replace(cfg, seed=seed, n_steps=steps or cfg.n_steps))
    secs = time.perf_counter() - t0
    got, nec = set(found.edges()), set(necessary.edges())
    bad = mismatches(model, found, load_reference(name), task.meta["output"] == "categorical", ablation="zero",
                     padded=True)
    return (f"| {name} | {'split' if split else 'default'} | {seed} | {len(got)} | {len(nec)} | "
            f"{'yes' if got == nec else '**no**'} | {sorted(nec - got) or '-'} | {sorted(got - nec) or '-'} | {bad} | "
            f"{len(log.steps)} | {secs:.0f} s |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", default=sorted(tracr_models()), help=f"of {sorted(tracr_models())}")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=None, help="default: the program's own (tracr_prune_config)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print("| program | graph | seed | edges found | necessary | exact? | necessary missed | kept beyond necessary | "
          "inputs differing | steps | time |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in args.names:
        for split in (False, True):
            for seed in args.seeds:
                print(run(name, split, seed, args.steps), flush=True)


if __name__ == "__main__":
    main()
