"""GPU check of the Llama-family path: transformers equivalence in fp32/bf16, and one pruning step's peak
memory (measured vs engine.memory.estimate) and time, with and without per-layer checkpointing.

    python bench/gpu_llama_check.py            # on a CUDA machine (about 2-3 minutes on one H100)
    python bench/gpu_llama_check.py --smoke    # tiny shapes, runs anywhere (CPU included)

Prints two tables. Self-contained: random weights, no downloads.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.config import ModelConfig  # noqa: E402
from engine.graph import EdgeGraph  # noqa: E402
from engine.llama import convert_llama  # noqa: E402
from engine.masks import HardConcreteGates  # noqa: E402
from engine.memory import estimate  # noqa: E402
from engine.model import MaskedTransformer  # noqa: E402
from engine.weights import build  # noqa: E402

HF_SHAPES = {  # transformers equivalence
    "full": dict(hidden_size=1024, intermediate_size=2816, num_hidden_layers=4, num_attention_heads=16,
                 num_key_value_heads=4, vocab_size=32000),
    "smoke": dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=100),
}
LLAMA = dict(norm="rmsnorm", positions="rotary", mlp="swiglu", use_attn_bias=False, use_mlp_bias=False,
             architecture="llama", n_ctx=4096)
STEP_SHAPES = {  # memory and time: (config, batch, seq_len)
    "full": [("1B shape (GQA 32/8)", dict(n_layers=16, n_heads=32, n_kv_heads=8, d_model=2048, d_head=64,
                                          d_mlp=5632, d_vocab=32000), 8, 128),
             ("7B shape (MHA)", dict(n_layers=32, n_heads=32, d_model=4096, d_head=128, d_mlp=11008,
                                     d_vocab=32000), 4, 128)],
    "smoke": [("tiny GQA", dict(n_layers=2, n_heads=4, n_kv_heads=2, d_model=64, d_head=16, d_mlp=96,
                                d_vocab=100), 4, 16)],
}


def equivalence(shape: dict, device: torch.device) -> list[tuple]:
    """Max |logit difference| and top-1 agreement, engine masked forward (all edges kept) vs transformers."""
    import transformers
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        torch.manual_seed(0)
        hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(**shape, max_position_embeddings=4096)).eval()
        model = build(*convert_llama(hf.config.to_dict(), hf.state_dict())).to(device, dtype)
        hf = hf.to(device, dtype)
        gen = torch.Generator().manual_seed(1)
        clean, corrupt = (torch.randint(0, shape["vocab_size"], (4, 64), generator=gen).to(device) for _ in range(2))
        with torch.no_grad():
            want, want_c = hf(clean).logits.float(), hf(corrupt).logits.float()
            ones = model.graph.real_edges.to(device).float()
            cache = model.corrupt_cache(corrupt)
            got = model(clean, ones, cache).float()
            got_c = model(clean, torch.zeros_like(ones), cache).float()
        top1 = (got.argmax(-1) == want.argmax(-1)).float().mean().item()
        rows.append((str(dtype).removeprefix("torch."), (got - want).abs().max().item(),
                     (got_c - want_c).abs().max().item(), top1))
        del hf, model
    return rows


def _peak_reset(device: torch.device) -> int:
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _peak(device: torch.device) -> int:
    if device.type == "cuda":
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def step(model: MaskedTransformer, batch: int, seq: int, checkpoint: bool) -> float:
    """One pruning step (corrupted cache, targets, gate sample, masked forward, KL, backward, Adam); seconds."""
    dev = model.device
    gen = torch.Generator().manual_seed(0)
    clean, corrupt = (torch.randint(0, model.cfg.d_vocab, (batch, seq), generator=gen).to(dev) for _ in range(2))
    positions = torch.full((batch, 1), seq - 1, device=dev)
    gates = HardConcreteGates(model.graph.real_edges).to(dev)
    opt = torch.optim.Adam(gates.parameters(), lr=0.1)
    t0 = time.perf_counter()
    cache = model.corrupt_cache(corrupt)
    with torch.no_grad():
        target = model.reference_forward(clean, positions).float().log_softmax(-1)
    out = model(clean, gates.sample(), cache, positions, checkpoint=checkpoint).float().log_softmax(-1)
    (target.exp() * (target - out)).sum(-1).mean().backward()
    opt.step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def memory_rows(shapes: list, device: torch.device, dtype: torch.dtype) -> list[tuple]:
    rows = []
    for name, arch, batch, seq in shapes:
        cfg = ModelConfig(**arch, **LLAMA)
        graph = EdgeGraph(cfg.n_layers, cfg.n_heads, cfg.n_kv_heads)  # stays on the CPU, as load_model's
        torch.set_default_dtype(dtype)
        with torch.device(device):
            model = MaskedTransformer(cfg, graph)
        torch.set_default_dtype(torch.float32)
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0, 0.02)
        model.requires_grad_(False)
        for checkpoint in (False, True):
            step(model, 1, 8, checkpoint)  # warm-up: kernels, workspaces
            base = _peak_reset(device)
            seconds = min(step(model, batch, seq, checkpoint) for _ in range(2))
            est = estimate(cfg, batch, seq, dtype, checkpoint=checkpoint)
            rows.append((name, batch, seq, checkpoint, (_peak(device) - base) / 2**30,
                         (est.total - est.weights) / 2**30, est.weights / 2**30, seconds))
        del model
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny shapes (CPU ok)")
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    kind = "smoke" if args.smoke or device.type == "cpu" else "full"
    torch.set_num_threads(1) if device.type == "cpu" else None
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"device {name}; shapes '{kind}'; torch {torch.__version__}")
    print("\nengine masked forward vs transformers LlamaForCausalLM (random GQA weights, batch 4 x 64 tokens)")
    print(f"{'dtype':<9} {'max|dlogit| kept':>17} {'max|dlogit| ablated':>20} {'top-1 agree':>12}")
    for dtype, d_kept, d_abl, top1 in equivalence(HF_SHAPES[kind], device):
        print(f"{dtype:<9} {d_kept:>17.2e} {d_abl:>20.2e} {top1:>12.4f}")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    print(f"\none pruning step, {str(dtype).removeprefix('torch.')}: peak memory above the weights, measured "
          f"({'torch.cuda.max_memory_allocated' if device.type == 'cuda' else 'max RSS'}) vs engine.memory.estimate")
    print(f"{'shape':<20} {'B':>3} {'T':>4} {'ckpt':>5} {'meas GiB':>9} {'est GiB':>8} {'est/meas':>8} "
          f"{'weights GiB':>11} {'step s':>7}")
    if device.type == "cpu":
        print("(CPU smoke run: max RSS never resets, so the measured column is not meaningful here)")
    for shape, b, t, ck, meas, est, w, sec in memory_rows(STEP_SHAPES[kind], device, dtype):
        print(f"{shape:<20} {b:>3} {t:>4} {str(ck):>5} {meas:>9.3f} {est:>8.3f} {est / max(meas, 1e-9):>8.2f} "
              f"{w:>11.2f} {sec:>7.3f}")


if __name__ == "__main__":
    main()
