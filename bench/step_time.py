"""Seconds and peak memory per Edge Pruning step against two baselines of the same model and batch, and the
operation-count floor of each regime.

Baselines (transformers' GPT-2):
  plain      the usual training step: forward + backward with weight gradients for every parameter and
             logits over the whole vocabulary at every position (work a prune step never does);
  equal work frozen weights, the gradient to the input embeddings only, logits only at the scored position:
             the work of the unmasked model that a prune step cannot avoid.
Floor: multiply-accumulates a masked step must do, in seconds at the equal-work run's own rate: the equal-work
MACs, plus the mixing products (forward, gate gradient and buffer gradient: 3 x edges x tokens x d_model), plus
the no-grad forwards each regime recomputes (recompute: clean and corrupted; targets kept: corrupted; all kept:
none). "vs floor" is measured / floor (1.0 = no overhead beyond the arithmetic).

Usage: python bench/step_time.py [--device cpu|cuda] [--steps 5] [--shapes gpt2-small,tiny] [--batches 8,32]
Each measurement runs in a fresh subprocess so peak memory is its own. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHAPES = {"gpt2-small": dict(n_layer=12, n_head=12, n_embd=768, vocab_size=50257, n_positions=1024),
          "tiny": dict(n_layer=2, n_head=4, n_embd=128, vocab_size=512, n_positions=64)}
SEQ = 20
CLOCK = time.perf_counter  # --cpu-time: the main thread's CPU seconds, robust when other jobs share the cores
# (not the process's: the memory sampler thread's own CPU time would count, ~1/3 of a step on a CPU)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


class _RssPeak:
    """Samples this process's resident memory every millisecond (CPU has no allocator peak counter)."""

    def __init__(self) -> None:
        self.peak, self._stop = _rss_mb(), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_mb())
            time.sleep(0.001)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return max(self.peak, _rss_mb())


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _peak_start(device: str):  # noqa: ANN202
    """CUDA: the allocator's exact peak, from after a warm-up step. CPU: resident memory sampled every
    millisecond from before the warm-up step, because memory freed by the warm-up stays resident (the
    C allocator keeps it for reuse), so a later start would miss what the step itself needs."""
    gc.collect()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated() / 2**20
    return (_rss_mb(), _RssPeak())


def _peak_end(device: str, base) -> float:  # noqa: ANN001
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20 - base
    return base[1].stop() - base[0]


def _hf_model(shape: str, device: str):
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(**SHAPES[shape])).eval().to(device)


def run_plain(shape: str, batch: int, steps: int, device: str) -> dict:
    """transformers forward + backward (weights trainable, loss over all positions), the usual training step."""
    model = _hf_model(shape, device)
    x = torch.randint(0, SHAPES[shape]["vocab_size"], (batch, SEQ), device=device)
    def step() -> None:
        model.zero_grad(set_to_none=True)
        model(x, labels=x).loss.backward()
    return _time_steps(step, steps, device, after_warmup=lambda: model.zero_grad(set_to_none=True))


def run_equal(shape: str, batch: int, steps: int, device: str) -> dict:
    """transformers with frozen weights: forward, logits at the scored (last) position only, backward to the
    input embeddings only (no weight gradients): what a prune step computes of the unmasked model."""
    model = _hf_model(shape, device).requires_grad_(False)
    x = torch.randint(0, SHAPES[shape]["vocab_size"], (batch, SEQ), device=device)
    def step() -> None:
        emb = model.transformer.wte(x).detach().requires_grad_(True)
        hidden = model.transformer(inputs_embeds=emb).last_hidden_state[:, -1]
        model.lm_head(hidden).log_softmax(-1)[:, 0].sum().backward()
    return _time_steps(step, steps, device)


def _time_steps(step, steps: int, device: str, after_warmup=None) -> dict:  # noqa: ANN001
    """One warm-up step, then `steps` timed ones; peak memory from before the warm-up on a CPU (see _peak_start)."""
    base = _peak_start(device) if device == "cpu" else None
    step()
    if after_warmup is not None:
        after_warmup()
    base = base or _peak_start(device)
    t0 = CLOCK()
    for _ in range(steps):
        step()
    _sync(device)
    return {"s_per_step": (CLOCK() - t0) / steps, "peak_mb": _peak_end(device, base)}


def floor_macs(shape: str, batch: int) -> dict[str, float]:
    """Multiply-accumulates of the equal-work baseline and of each regime's masked step (see the module doc)."""
    from engine.graph import EdgeGraph
    c = SHAPES[shape]
    d, layers, tokens = c["n_embd"], c["n_layer"], batch * SEQ
    per_token = layers * (12 * d * d + 2 * SEQ * d)        # q, k, v, o (4 d^2), MLP (8 d^2), scores and mix
    forward = tokens * per_token                            # one no-grad forward, no logits
    logits = batch * d * c["vocab_size"]                    # at the scored position only
    equal = 2 * (forward + logits)                          # forward, and backward to the inputs only
    mixing = 3 * EdgeGraph(layers, c["n_head"]).n_edges * tokens * d
    return {"equal": equal, "all": equal + mixing, "targets": equal + mixing + forward,
            "none": equal + mixing + 2 * forward + logits}


def _task(shape: str, batch: int):
    from engine.tasks.base import Task, TaskData
    v, g = SHAPES[shape]["vocab_size"], torch.Generator().manual_seed(0)
    clean = torch.randint(0, v, (batch, SEQ), generator=g)
    corrupt = torch.randint(0, v, (batch, SEQ), generator=g)
    ans = torch.randint(0, v, (batch, 1), generator=g)
    data = TaskData(clean, corrupt, torch.full((batch,), SEQ), torch.full((batch, 1), SEQ - 1), ans, ans,
                    torch.full((batch, 1), -1))
    return Task("bench", "logit_diff", {"train": data, "validation": data, "test": data})


def run_prune(shape: str, batch: int, steps: int, device: str, cache: str = "none") -> dict:
    """One Edge Pruning step: gate sample, masked forward + backward, Adam; plus, unless cached, the
    corrupted activations and clean targets (no grad) of the batch.

    cache: "none" = recompute both every step (a train split too big for the cache budget, first epoch);
    "targets" = clean targets kept per example (steady state of a long run on a big split);
    "all" = targets and corrupted activations kept (the default when the split fits cache_budget_mb).
    """
    import tempfile

    from engine import PruneConfig, load_model, prune
    hf = _hf_model(shape, "cpu")
    folder = tempfile.mkdtemp()
    hf.save_pretrained(folder)
    del hf
    model = load_model(folder, device=device, dtype=torch.float32)
    task = _task(shape, batch)
    target_mb = batch * SHAPES[shape]["vocab_size"] * 4 / 2**20
    budget = {"none": 0.0, "targets": target_mb * 1.5, "all": 1e9}[cache]
    base = _peak_start(device) if device == "cpu" else None
    prune(model, task, PruneConfig(n_steps=2, batch_size=batch, cache_budget_mb=budget))
    base = base or _peak_start(device)
    times = []
    cfg = PruneConfig(n_steps=steps + 1, batch_size=batch, cache_budget_mb=budget)
    prune(model, task, cfg, on_step=lambda s: times.append(CLOCK()) and None)
    _sync(device)
    return {"s_per_step": (times[-1] - times[0]) / (len(times) - 1), "peak_mb": _peak_end(device, base)}


def child(kind: str, shape: str, batch: int, steps: int, device: str) -> None:
    if kind == "plain":
        print(json.dumps(run_plain(shape, batch, steps, device)))
    elif kind == "equal":
        print(json.dumps(run_equal(shape, batch, steps, device)))
    else:
        print(json.dumps(run_prune(shape, batch, steps, device, cache=kind.split("-", 1)[1])))


def measure(kind: str, shape: str, batch: int, steps: int, device: str) -> dict:
    threads = ["--threads", str(torch.get_num_threads())] + (["--cpu-time"] if CLOCK is time.thread_time else [])
    out = subprocess.run([sys.executable, __file__, *threads, "--child", kind, shape, str(batch), str(steps), device],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--shapes", default="gpt2-small,tiny")
    ap.add_argument("--batches", default="8,32")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--cpu-time", action="store_true", help="time with the main thread's CPU seconds (needs --threads 1)")
    ap.add_argument("--child", nargs=5)
    args = ap.parse_args()
    global CLOCK
    if args.cpu_time:
        if args.threads != 1:
            ap.error("--cpu-time counts the main thread only: use it with --threads 1")
        CLOCK = time.thread_time
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        kind, shape, batch, steps, device = args.child
        return child(kind, shape, int(batch), int(steps), device)
    dev = args.device
    name = torch.cuda.get_device_name() if dev == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    clock = "main thread's CPU time" if args.cpu_time else "wall-clock"
    print(f"device: {name}; torch {torch.__version__}; fp32; {SEQ} tokens; {args.steps} timed steps; {clock}\n")
    print("| shape | batch | plain fwd+bwd s | equal work s | prune step s: recompute / targets kept / all kept "
          "| vs plain | vs equal work | floor s | vs floor | plain peak MB | prune peak MB (recompute / all kept) "
          "| memory vs plain |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    regimes = ("none", "targets", "all")
    for shape in args.shapes.split(","):
        for batch in map(int, args.batches.split(",")):
            p, e = measure("plain", shape, batch, args.steps, dev), measure("equal", shape, batch, args.steps, dev)
            q = {c: measure(f"prune-{c}", shape, batch, args.steps, dev) for c in regimes}
            macs = floor_macs(shape, batch)
            floor = {c: e["s_per_step"] * macs[c] / macs["equal"] for c in regimes}
            def ratios(base: dict[str, float]) -> str:
                return " / ".join(f"{q[c]['s_per_step'] / base[c]:.2f}x" for c in regimes)
            t = " / ".join(f"{q[c]['s_per_step']:.3f}" for c in regimes)
            m = " / ".join(f"{q[c]['peak_mb']:.0f}" for c in ("none", "all"))
            mr = " / ".join(f"{q[c]['peak_mb'] / max(p['peak_mb'], 1e-9):.2f}x" for c in ("none", "all"))
            print(f"| {shape} | {batch} | {p['s_per_step']:.3f} | {e['s_per_step']:.3f} | {t} "
                  f"| {ratios({c: p['s_per_step'] for c in regimes})} | {ratios({c: e['s_per_step'] for c in regimes})} "
                  f"| {' / '.join(f'{floor[c]:.3f}' for c in regimes)} | {ratios(floor)} "
                  f"| {p['peak_mb']:.0f} | {m} | {mr} |", flush=True)
    print("\nequal-work MAC rate: floor s = equal-work s x floor MACs / equal-work MACs; MACs at the last shape: "
          + ", ".join(f"{k} {v / 1e9:.1f} G" for k, v in macs.items()))


if __name__ == "__main__":
    main()
