"""Peak-memory estimate of one Edge Pruning step per device, before any weights are loaded."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .config import ModelConfig

DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
          "fp16": torch.float16, "float16": torch.float16}
"""Names accepted for `dtype` (CLI and API)."""

LLAMA_TYPES = ("llama", "mistral", "qwen2")

GATE_COPIES = 10
"""Gate-shaped fp32 tensors alive at the peak: log_alpha, its grad, 2 Adam moments, the sample and
the intermediates hard-concrete sampling saves for backward, the keep copy in the model dtype, d keep."""


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per device at the peak of one step (forward + backward + optimizer step)."""

    weights: int        # frozen parameters resident on this device (FSDP: its shard plus one gathered block)
    buffers: int        # corrupted writer outputs + residuals, the clean-minus-corrupted buffer and its gradient
    activations: int    # saved for backward (every layer, or one layer when checkpointing) + backward transients
    gates: int          # edge gate logits, gradients, Adam moments and samples (replicated on every device)
    logits: int         # target and circuit logits at the answer positions, softmax transients
    batch_per_device: int
    n_gpus: int
    checkpoint: bool

    @property
    def total(self) -> int:
        return self.weights + self.buffers + self.activations + self.gates + self.logits

    def to_dict(self) -> dict:
        return {**asdict(self), "total": self.total}

    def table(self) -> str:
        """A few aligned lines for `python -m engine info` and the app."""
        rows = [("weights", self.weights), ("outbox/buffers", self.buffers), ("activations", self.activations),
                ("gates + Adam", self.gates), ("logits", self.logits), ("total per device", self.total)]
        head = (f"peak memory per device ({self.n_gpus} device{'s' if self.n_gpus > 1 else ''}, "
                f"batch {self.batch_per_device} per device, checkpointing {'on' if self.checkpoint else 'off'})")
        return "\n".join([head] + [f"  {name:<17} {_gib(v)}" for name, v in rows])


def _gib(n: int) -> str:
    return f"{n / 2**30:8.2f} GiB" if n >= 2**30 else f"{n / 2**20:8.1f} MiB"


def resolve_dtype(dtype: torch.dtype | str) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose from {sorted(DTYPES)}")
    return DTYPES[dtype]


def block_params(cfg: ModelConfig) -> int:
    """Parameters of one transformer block (all stored, zeros included)."""
    d, h, kv, dh, dm = cfg.d_model, cfg.n_heads, cfg.kv_heads, cfg.d_head, cfg.d_mlp
    attn = (h + 2 * kv) * (d * dh + dh) + h * dh * d + d
    mlp = (3 if cfg.mlp == "swiglu" else 2) * d * dm + dm + d
    return attn + mlp + 4 * d


def outer_params(cfg: ModelConfig) -> int:
    """Embedding, positions, final norm and unembedding (replicated under FSDP)."""
    pos = cfg.n_ctx * cfg.d_model if cfg.positions == "learned" else 0
    return cfg.d_vocab * cfg.d_model + pos + 2 * cfg.d_model + (cfg.d_model + 1) * cfg.vocab_out


def graph_size(cfg: ModelConfig) -> tuple[int, int]:
    """(n_src, n_dst) of the edge graph, in closed form (engine/graph.py)."""
    n_in = 2 if cfg.split_embeddings else 1
    return n_in + cfg.n_layers * (cfg.n_heads + 1), cfg.n_layers * (cfg.n_heads + 2 * cfg.kv_heads + 1) + 1


def layer_activations(cfg: ModelConfig, rows: int, size: int) -> int:
    """Bytes one masked layer saves for backward; rows = batch * seq_len.

    The weights are frozen, so a projection saves nothing of its input, and the attention readers'
    inputs are mixed again in backward unless kept (kept_inputs). Saved: the q/k/v outputs and the
    attention output, the MLP reader's norm input (fp32 for RMSNorm), and the d_mlp intermediates of the MLP.
    """
    d, h, kv, dh, dm = cfg.d_model, cfg.n_heads, cfg.kv_heads, cfg.d_head, cfg.d_mlp
    norm_size = 4 if cfg.norm == "rmsnorm" else size
    attn = (2 * h + 2 * kv) * dh * size
    mlp = d * norm_size + (3 if cfg.mlp == "swiglu" else 1) * dm * size
    return rows * (attn + mlp)


def kept_inputs(cfg: ModelConfig, rows: int, size: int, device: str) -> int:
    """Bytes of the attention readers' mixed inputs kept from forward to backward on this device type."""
    from .residual import kept_input_rows
    return sum(kept_input_rows(cfg, rows * cfg.d_model * size, device).values()) * rows * cfg.d_model * size


def backward_transient(cfg: ModelConfig, rows: int, size: int) -> int:
    """Alive at once in a layer's backward: two copies of its attention readers' inputs (mixed, normed;
    an upper bound: on a CPU they are one token chunk at a time)."""
    return 2 * rows * (cfg.n_heads + 2 * cfg.kv_heads) * cfg.d_model * max(size, 4 if cfg.norm == "rmsnorm" else size)


def estimate(cfg: ModelConfig, batch: int, seq_len: int, dtype: torch.dtype | str = torch.float32,
             n_gpus: int = 1, checkpoint: bool | None = None, n_positions: int = 1,
             device: str = "cuda") -> MemoryEstimate:
    """Peak bytes per device of one pruning step.

    Args:
        cfg: the model's architecture.
        batch: global examples per step (split evenly over `n_gpus`).
        seq_len: tokens per example.
        dtype: weights and activations (gates and Adam state are always fp32).
        n_gpus: processes of a torchrun/FSDP run; blocks are sharded, gates and data-parallel batch split.
        checkpoint: per-layer activation checkpointing; None = on when n_gpus > 1 (FSDP needs it).
        n_positions: answer positions scored per example (logits are computed there only).
        device: device type ("cuda", "cpu", ...); it decides how many reader inputs are kept for backward.
    Returns:
        a MemoryEstimate (bytes).
    Raises:
        ValueError: non-positive sizes, or a batch that does not split evenly over the devices.
    """
    if min(batch, seq_len, n_gpus, n_positions) < 1:
        raise ValueError("batch, seq_len, n_gpus and n_positions must be >= 1")
    if batch % n_gpus:
        raise ValueError(f"batch {batch} does not split evenly over {n_gpus} devices")
    size = resolve_dtype(dtype).itemsize
    checkpoint = n_gpus > 1 if checkpoint is None else checkpoint
    local, n_src, n_dst = batch // n_gpus, *graph_size(cfg)
    rows = local * seq_len
    blocks = cfg.n_layers * block_params(cfg)
    weights = outer_params(cfg) + (blocks if n_gpus == 1 else blocks // n_gpus + block_params(cfg))
    # CorruptCache (outputs + residual snapshots) + buffer data (y - y~) + buffer gradient
    buffers = (3 * n_src + 2 * cfg.n_layers + 1) * rows * cfg.d_model * size
    saved = layer_activations(cfg, rows, size) * (1 if checkpoint else cfg.n_layers)
    saved += 0 if checkpoint else kept_inputs(cfg, rows, size, device)
    activations = saved + backward_transient(cfg, rows, size)
    gates = GATE_COPIES * n_src * n_dst * 4
    logits = 6 * local * n_positions * cfg.vocab_out * 4
    return MemoryEstimate(weights * size, buffers, activations, gates, logits, local, n_gpus, checkpoint)


def hf_config(name: str) -> dict:
    """The Hugging Face config.json of an embedded model, a local folder or a hub id (only that file is fetched)."""
    from .weights import embedded_models
    path = embedded_models().get(name) or Path(name).expanduser()
    if path.is_dir():
        return json.loads((path / "config.json").read_text())
    try:
        from huggingface_hub import hf_hub_download
        return json.loads(Path(hf_hub_download(name, "config.json")).read_text())
    except Exception as e:  # offline, unknown or gated repo
        raise ValueError(f"cannot read the config of {name!r}: {type(e).__name__}") from None


def config_for(name: str) -> ModelConfig | None:
    """ModelConfig from config.json alone for Llama-family models (13B: no 26 GB read to size a run);
    None for other families, whose converter needs the weights."""
    from .llama import llama_config
    hf = hf_config(name)
    return llama_config(hf) if hf.get("model_type") in LLAMA_TYPES else None
