"""Resumable pruning runs: gates, multipliers, optimiser moments and RNG state in safetensors (no pickle)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .circuit import _atomic
from .config import PruneConfig

CKPT_FORMAT = "prune-checkpoint-1"


def _comparable(cfg: PruneConfig) -> dict:
    """Settings that must match to continue a run: all but n_steps (the effective warm-up included)."""
    return {**{k: v for k, v in cfg.to_dict().items() if k not in ("n_steps", "warmup_steps")}, "warmup": cfg.warmup}


def save_checkpoint(path: Path, state: torch.nn.Module, opts: tuple[torch.optim.Optimizer, ...],
                    cfg: PruneConfig, step: int) -> None:
    """Write everything needed to continue the run at `step`, atomically."""
    tensors = {f"state.{k}": v.detach().cpu().contiguous() for k, v in state.state_dict().items()}
    for o, opt in enumerate(opts):
        for p, st in opt.state_dict()["state"].items():
            for k, v in st.items():
                tensors[f"opt{o}.{p}.{k}"] = torch.as_tensor(v).detach().cpu().reshape(-1).contiguous().clone()
    tensors["rng.cpu"] = torch.get_rng_state()
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    meta = {"format": CKPT_FORMAT, "step": str(step), "prune_config": json.dumps(cfg.to_dict())}
    _atomic(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def load_checkpoint(path: Path, state: torch.nn.Module, opts: tuple[torch.optim.Optimizer, ...],
                    cfg: PruneConfig) -> int:
    """Restore a checkpoint into `state` and `opts`; returns the step to continue from.

    Raises:
        ValueError: unknown format, or a checkpoint of a run with different hyper-parameters.
    """
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # a damaged file: say so instead of a library traceback
        raise ValueError(f"{path}: unreadable checkpoint ({e}); delete it to start over") from None
    if meta.get("format") != CKPT_FORMAT:
        raise ValueError(f"{path}: not a pruning checkpoint of format {CKPT_FORMAT}")
    saved = PruneConfig.from_dict(json.loads(meta["prune_config"]))
    if _comparable(saved) != _comparable(cfg):
        raise ValueError(f"{path}: checkpoint of a run with other settings; use another --out folder or the same settings")
    device = next(state.parameters()).device
    state.load_state_dict({k[6:]: v.to(device) for k, v in tensors.items() if k.startswith("state.")}, strict=False)
    for o, opt in enumerate(opts):  # optimizer state_dict numbers params in group order
        for i, prm in enumerate(p for group in opt.param_groups for p in group["params"]):
            saved_st = {k.split(".", 2)[2]: v for k, v in tensors.items() if k.startswith(f"opt{o}.{i}.")}
            if saved_st:
                opt.state[prm] = {"step": saved_st["step"].reshape(()),
                                  "exp_avg": saved_st["exp_avg"].view_as(prm).to(device),
                                  "exp_avg_sq": saved_st["exp_avg_sq"].view_as(prm).to(device)}
    torch.set_rng_state(tensors["rng.cpu"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    return int(meta["step"])
