"""Check engine.memory.estimate against the measured peak memory of one pruning step on CPU.

Each case runs in a fresh subprocess (one thread): it builds a random model, then runs one step
(corrupted cache, target logits, gate sample, masked forward, KL, backward, Adam) and reports
the resident-set growth from the model (weights) and the peak RSS growth of the step
(`resource.getrusage(RUSAGE_SELF).ru_maxrss`), next to the estimate of the same quantities.

    python bench/memory_check.py            # prints a table
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = {
    "gpt2-small shape": dict(n_layers=12, n_heads=12, d_model=768, d_head=64, d_mlp=3072, d_vocab=50257, n_ctx=1024),
    "llama-style 8L GQA": dict(n_layers=8, n_heads=8, n_kv_heads=2, d_model=512, d_head=64, d_mlp=1408,
                               d_vocab=32000, n_ctx=2048, norm="rmsnorm", positions="rotary", mlp="swiglu",
                               use_attn_bias=False, use_mlp_bias=False, architecture="llama"),
}
RUNS = [("gpt2-small shape", 8, 32), ("llama-style 8L GQA", 8, 64)]


def _rss() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096


def child(case: str, batch: int, seq: int, checkpoint: bool) -> dict:
    import resource

    import torch
    torch.set_num_threads(1)
    from engine.config import ModelConfig
    from engine.memory import estimate
    from engine.model import MaskedTransformer
    cfg = ModelConfig(**CASES[case])
    r0 = _rss()
    model = MaskedTransformer(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02)
    model.requires_grad_(False)
    r1 = _rss()
    _step(model, 1, 4, checkpoint)  # first calls initialise kernels and thread pools: not the step's memory
    r2 = _rss()
    _step(model, batch, seq, checkpoint)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    est = estimate(cfg, batch, seq, torch.float32, checkpoint=checkpoint, device="cpu")
    return {"case": case, "batch": batch, "seq": seq, "checkpoint": checkpoint,
            "weights_measured": r1 - r0, "weights_est": est.weights,
            "step_measured": peak - r2, "step_est": est.total - est.weights}


def _step(model, batch: int, seq: int, checkpoint: bool) -> None:  # noqa: ANN001
    """One pruning step: corrupted cache, targets, gate sample, masked forward, KL, backward, Adam."""
    import torch

    from engine.masks import HardConcreteGates
    gen = torch.Generator().manual_seed(0)
    clean, corrupt = (torch.randint(0, model.cfg.d_vocab, (batch, seq), generator=gen) for _ in range(2))
    positions = torch.full((batch, 1), seq - 1)
    gates = HardConcreteGates(model.graph.real_edges)
    opt = torch.optim.Adam(gates.parameters(), lr=0.1)
    cache = model.corrupt_cache(corrupt)
    with torch.no_grad():
        target = model.reference_forward(clean, positions).log_softmax(-1)
    out = model(clean, gates.sample(), cache, positions, checkpoint=checkpoint).log_softmax(-1)
    loss = (target.exp() * (target - out)).sum(-1).mean()
    loss.backward()
    opt.step()


def _run(case: str, batch: int, seq: int, checkpoint: bool, mmap: bool) -> dict:
    env = {**os.environ, **({"MALLOC_MMAP_THRESHOLD_": "65536"} if mmap else {})}
    cmd = [sys.executable, __file__, "--child", json.dumps([case, batch, seq, checkpoint])]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=True, env=env)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    mib = lambda n: f"{n / 2**20:7.0f}"  # noqa: E731
    print("MiB; 'glibc' = default allocator (keeps freed heap), 'mmap' = MALLOC_MMAP_THRESHOLD_=65536 (live bytes)")
    print(f"{'case':<19} {'B':>2} {'T':>3} {'ckpt':>5} | {'weights meas / est':>18} | "
          f"{'step glibc / mmap / est':>25} | est/glibc est/mmap")
    for case, batch, seq in RUNS:
        for checkpoint in (False, True):
            glibc, mmap = (_run(case, batch, seq, checkpoint, m) for m in (False, True))
            est = glibc["step_est"]
            print(f"{case:<19} {batch:>2} {seq:>3} {str(checkpoint):>5} | {mib(glibc['weights_measured'])} / "
                  f"{mib(glibc['weights_est'])}    | {mib(glibc['step_measured'])} / {mib(mmap['step_measured'])} / "
                  f"{mib(est)} | {est / glibc['step_measured']:8.2f} {est / mmap['step_measured']:8.2f}")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        sys.path.insert(0, str(ROOT))
        print(json.dumps(child(*json.loads(sys.argv[2]))))
    else:
        main()
