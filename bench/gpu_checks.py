"""GPU correctness and speed checks of the GPT-2 path: invariants in fp32 and bf16, and an embedded-model run.

    python bench/gpu_checks.py                 # on CUDA (about a minute)
    python bench/gpu_checks.py --device cpu    # the same checks on CPU (slower)

Prints a table of max |difference| for the invariants and the wall-clock time of pruning the embedded IOI model.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine import PruneConfig, evaluate, get_task, load_model, prune  # noqa: E402


def invariants(device: str, dtype: torch.dtype, n_layer: int, d: int) -> tuple[float, float, float]:
    """Max |masked - reference| with all edges kept, all ablated, and the transformers reference itself."""
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config(n_layer=n_layer, n_head=12, n_embd=d, vocab_size=50257)).eval()
    folder = tempfile.mkdtemp()
    hf.save_pretrained(folder)
    hf = hf.to(device, dtype)
    model = load_model(folder, device=device, dtype=dtype)
    x = torch.randint(0, 50257, (4, 20), device=device)
    xc = torch.randint(0, 50257, (4, 20), device=device)
    keep = model.graph.real_edges.to(device, dtype)
    with torch.no_grad():
        ref, refc = hf(x).logits.float(), hf(xc).logits.float()
        cache = model.corrupt_cache(xc)
        kept = (model(x, keep, cache).float() - ref).abs().max().item()
        ablated = (model(x, keep * 0, cache).float() - refc).abs().max().item()
        plain = (model.reference_forward(x).float() - ref).abs().max().item()
    return kept, ablated, plain


def chunking(device: str) -> tuple[int, float, float]:
    """Max |difference| of outputs and gate gradients between the device's defaults (one chunk on a GPU, no
    reader inputs kept) and 4 MiB chunks with every reader input kept for backward (GPT-2-small shape)."""
    import engine.residual as M
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(0)
    folder = tempfile.mkdtemp()
    GPT2LMHeadModel(GPT2Config(n_layer=12, n_head=12, n_embd=768, vocab_size=50257)).save_pretrained(folder)
    model = load_model(folder, device=device, dtype=torch.float32)
    x = torch.randint(0, 50257, (8, 20), device=device)
    xc = torch.randint(0, 50257, (8, 20), device=device)
    pos = torch.full((8, 1), 19, device=device)
    la = torch.randn(model.graph.n_src, model.graph.n_dst, generator=torch.Generator().manual_seed(0)) * 3
    results, kind = [], torch.device(device).type
    defaults = (M.CHUNK_BYTES.get(kind, M.CHUNK_BYTES["default"]), M.KEEP_INPUT_BYTES.get(kind, M.KEEP_INPUT_BYTES["default"]))
    for chunk_bytes, keep_bytes in (defaults, (4 * 2**20, 2**40)):
        old = dict(M.CHUNK_BYTES), dict(M.KEEP_INPUT_BYTES)
        M.CHUNK_BYTES[kind], M.KEEP_INPUT_BYTES[kind] = chunk_bytes, keep_bytes
        cache = model.corrupt_cache(xc)
        keep = (torch.sigmoid(la) * model.graph.real_edges).to(device).requires_grad_(True)
        out = model(x, keep, cache, pos)
        out.float().logsumexp(-1).sum().backward()
        for table, saved in zip((M.CHUNK_BYTES, M.KEEP_INPUT_BYTES), old):
            table.clear()
            table.update(saved)
        results.append((cache.chunk, out.detach().float(), keep.grad.float()))
    (_, o1, g1), (chunk, o2, g2) = results
    return chunk, (o1 - o2).abs().max().item(), ((g1 - g2).abs().max() / g1.abs().max()).item()


def embedded_run(device: str, steps: int) -> str:
    model = load_model("ioi-2l", device=device, dtype=torch.float32)
    task = get_task("ioi", model.tokenizer, n=256, seed=0, n_ctx=model.cfg.n_ctx)
    t0 = time.perf_counter()
    circuit, log = prune(model, task, PruneConfig(n_steps=steps))
    if device == "cuda":
        torch.cuda.synchronize()
    el = time.perf_counter() - t0
    r = evaluate(model, task, circuit)
    return (f"| ioi-2l, {steps} steps | {el:.1f} s ({1000 * el / steps:.1f} ms/step) | {circuit.n_edges} edges, "
            f"sparsity {circuit.sparsity:.3f}, logit diff {r.metric:.2f} of {r.full_metric:.2f}, acc {r.accuracy:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=1000)
    args = ap.parse_args()
    name = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    print(f"device: {name}; torch {torch.__version__}\n")
    print("| model | dtype | all kept vs HF | all ablated vs HF corrupted | reference_forward vs HF |")
    print("|---|---|---|---|---|")
    shapes = [("gpt2-small shape", 12, 768), ("2-layer d384", 2, 384)]
    dtypes = [torch.float32] + ([torch.bfloat16] if args.device == "cuda" else [])
    for label, n_layer, d in shapes:
        for dtype in dtypes:
            k, a, p = invariants(args.device, dtype, n_layer, d)
            print(f"| {label} | {str(dtype)[6:]} | {k:.2e} | {a:.2e} | {p:.2e} |", flush=True)
    chunk, d_out, d_grad = chunking(args.device)
    print(f"\nchunking (GPT-2-small shape, batch 8): {chunk}-token chunks, every reader input kept, vs the device's "
          f"defaults: max |output difference| "
          f"{d_out:.2e}, max gate-gradient difference {d_grad:.2e} of the largest", flush=True)
    print("\n| run | wall-clock | result |\n|---|---|---|")
    print(embedded_run(args.device, args.steps), flush=True)


if __name__ == "__main__":
    main()
