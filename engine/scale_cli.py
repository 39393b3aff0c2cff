"""CLI pieces for large runs: the memory-estimate flags of `info`, the torchrun/FSDP set-up of `prune`."""

from __future__ import annotations

import argparse

import torch

from . import distributed
from .config import ModelConfig
from .graph import EdgeGraph
from .memory import DTYPES, block_params, config_for, estimate, outer_params
from .model import MaskedTransformer
from .weights import load_model


def add_memory_args(p: argparse.ArgumentParser) -> None:
    """`info` flags sizing a prospective run."""
    p.add_argument("--batch", type=int, default=32, help="global examples per step (memory estimate)")
    p.add_argument("--seq-len", type=int, default=64, help="tokens per example (memory estimate)")
    p.add_argument("--dtype", default=None, choices=sorted(DTYPES), help="default: bf16 with CUDA, else fp32")
    p.add_argument("--gpus", type=int, default=1, help="torchrun processes (FSDP shards the blocks over them)")
    p.add_argument("--checkpoint", action=argparse.BooleanOptionalAction, default=None,
                   help="per-layer activation checkpointing (default: on with --gpus > 1)")


def add_prune_args(p: argparse.ArgumentParser) -> None:
    """`prune` flags for big models."""
    p.add_argument("--checkpoint", action="store_true",
                   help="recompute each layer in backward instead of keeping its activations (less memory, ~1.3x time)")


GRAPHS = {"input": "one `input` writer (token + position embeddings): ACDC's and the EAP-IG library's graph "
                   "(GPT-2 small: 32,491 edges)",
          "split": "separate `tok` and `pos` writers: the Edge Pruning authors' graph (GPT-2 small: 32,936 edges)"}


def add_graph_arg(p: argparse.ArgumentParser) -> None:
    """`--graph input|split` for every command that loads a model."""
    p.add_argument("--graph", default=None, choices=sorted(GRAPHS), help="edge graph: " + "; ".join(
        f"{k}: {v}" for k, v in GRAPHS.items()) + " (default: input; split with --recipe authors)")


def wants_split(args: argparse.Namespace) -> bool:
    """Whether the model is loaded with separate token and position writers (--graph; --recipe authors: split)."""
    graph = getattr(args, "graph", None) or ("split" if getattr(args, "recipe", "default") == "authors" else "input")
    return graph == "split"


def model_config(name: str, split: bool = False) -> tuple[ModelConfig, EdgeGraph, int]:
    """(config, graph, parameter count) of a model; Llama-family models from config.json alone (no weights read)."""
    cfg = config_for(name)
    if cfg is None:
        model = load_model(name, device="cpu", split_embeddings=split)
        return model.cfg, model.graph, sum(p.numel() for p in model.parameters())
    if split:
        cfg = ModelConfig(**{**cfg.to_dict(), "split_embeddings": True})
    graph = EdgeGraph(cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, cfg.split_embeddings)
    return cfg, graph, outer_params(cfg) + cfg.n_layers * block_params(cfg)


def memory_table(args: argparse.Namespace, cfg: ModelConfig) -> str:
    """The `info` memory section for the flags of add_memory_args."""
    gpu = torch.cuda.is_available() or args.gpus > 1
    dtype = args.dtype or ("bf16" if gpu else "fp32")
    seq_len = min(args.seq_len, cfg.n_ctx)  # the model reads no more
    est = estimate(cfg, args.batch, seq_len, dtype, args.gpus, args.checkpoint, device="cuda" if gpu else "cpu")
    return f"{est.table()}\n  dtype {dtype}, seq_len {seq_len}; add ~25% for allocator fragmentation"


def load_for_prune(args: argparse.Namespace) -> tuple[distributed.DistContext, MaskedTransformer]:
    """Join the torchrun process group (if any), load the model on this rank's device, shard it with FSDP."""
    ctx = distributed.setup(args.device)
    model = load_model(args.model, device=ctx.device, checkpoint_layers=args.checkpoint,
                       split_embeddings=wants_split(args))
    return ctx, distributed.shard(model, ctx)
