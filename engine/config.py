"""Frozen configuration objects: the model architecture and the pruning run."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Literal


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a MaskedTransformer: GPT-2, Llama and Tracr families differ only in these switches."""

    n_layers: int
    n_heads: int
    d_model: int
    d_head: int
    d_mlp: int
    d_vocab: int                   # rows of the token embedding
    n_ctx: int                     # longest sequence the model accepts
    n_kv_heads: int | None = None  # grouped-query attention: heads sharing one k/v; None = n_heads
    d_vocab_out: int | None = None  # columns of the unembedding; None = d_vocab
    norm: Literal["layernorm", "rmsnorm", "none"] = "layernorm"
    positions: Literal["learned", "rotary", "none"] = "learned"
    mlp: Literal["gelu", "gelu_exact", "relu", "swiglu"] = "gelu"  # "gelu" = GPT-2's tanh approximation
    norm_eps: float = 1e-5
    rotary_base: float = 10000.0
    use_attn_bias: bool = True     # biases on q/k/v/o projections (GPT-2); Llama has none
    use_mlp_bias: bool = True
    is_causal: bool = True         # Tracr models attend both ways
    attn_scale: float | None = None  # None = 1/sqrt(d_head)
    split_embeddings: bool = False   # graph writers `tok` and `pos` instead of one `input` (learned positions only)
    architecture: str = "gpt2"     # family name, for display and for the weight converter
    key_pad_id: int | None = None  # keys at tokens with this id are masked out of attention, as tracr's compiled
    #                                model masks its pad token (tokens != pad_token); None = no key mask

    def __post_init__(self) -> None:
        for name in ("n_layers", "n_heads", "d_model", "d_head", "d_mlp", "d_vocab", "n_ctx"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.n_heads % self.kv_heads:
            raise ValueError(f"n_heads ({self.n_heads}) must be a multiple of n_kv_heads ({self.kv_heads})")
        if self.split_embeddings and self.positions != "learned":
            raise ValueError("split_embeddings needs learned position embeddings")

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def vocab_out(self) -> int:
        return self.d_vocab_out or self.d_vocab

    def to_dict(self) -> dict:
        out = asdict(self)
        if out["key_pad_id"] is None:   # added later: left out when unset, so older models keep their config hash
            del out["key_pad_id"]
        return out

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        return cls(**data)

    def hash(self) -> str:
        """Short content hash: two models with the same config hash have the same graph and shapes."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class PruneConfig:
    """Hyper-parameters of one Edge Pruning run. Serialized into every saved Circuit."""

    n_steps: int = 1000           # optimiser steps over the train split (the authors: 3000 on GPT-2)
    batch_size: int = 32          # examples per step
    edge_sparsity: float = 0.95   # final target share of edges removed (the Lagrangian's constraint); >1 = as sparse as possible
    node_sparsity: float | None = None  # target share of writer nodes removed; None = no node gates
    warmup_steps: int | None = None     # target ramps linearly from 0 over these steps; None = 80% of n_steps
    lr_gates: float = 0.1         # Adam lr of the gate logits; the authors use 0.8, which saturates gates (tied scores)
    lr_lambdas: float = 1.0       # Adam lr of the Lagrange multipliers (gradient ascent); the authors: 0.8
    init_log_alpha: float = 10.0  # every gate starts open, as the authors (normal around this, std 0.01)
    init_std: float = 0.01
    ablation: Literal["interchange", "zero", "mean"] = "interchange"
    seed: int = 0                 # seeds gate init, gate noise and batch order
    cache_budget_mb: float = 512  # precompute corrupted activations and targets for the train split if they fit
    recipe: Literal["default", "authors"] = "default"  # "authors": the released code's recipe (engine/recipe.py)
    max_step_loss: float | None = None  # a step whose loss is above this adds no sparsity pressure and leaves
    #                                     the multipliers where they are: sparsity stops where the loss cannot afford
    #                                     it; None = the plain Lagrangian on every step (the default)

    def __post_init__(self) -> None:
        if self.n_steps < 1:
            raise ValueError(f"n_steps must be >= 1, got {self.n_steps}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not 0.0 <= self.edge_sparsity <= 1.2:
            raise ValueError(f"edge_sparsity must be in [0, 1.2], got {self.edge_sparsity}")
        if self.node_sparsity is not None and not 0.0 <= self.node_sparsity <= 1.2:
            raise ValueError(f"node_sparsity must be in [0, 1.2] or None, got {self.node_sparsity}")
        if self.warmup_steps is not None and self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.lr_gates <= 0 or self.lr_lambdas <= 0:
            raise ValueError("learning rates must be positive")
        if self.max_step_loss is not None and not self.max_step_loss > 0:
            raise ValueError(f"max_step_loss must be positive or None, got {self.max_step_loss}")
        if self.ablation not in ("interchange", "zero", "mean"):
            raise ValueError(f"unknown ablation {self.ablation!r}; choose from ['interchange', 'mean', 'zero']")

        if self.recipe not in ("default", "authors"):
            raise ValueError(f"unknown recipe {self.recipe!r}; choose from ['authors', 'default']")
        if self.recipe == "authors" and self.node_sparsity is not None:
            raise ValueError("the authors' recipe trains writer-node gates by the KL alone; node_sparsity must be None")

    @classmethod
    def authors(cls, **overrides) -> PruneConfig:  # noqa: ANN003
        """The Edge Pruning authors' GPT-2 recipe (engine/recipe.py says what differs from ours): 3,000 steps,
        batch 32, learning rate 0.8 for gates and multipliers, the target ramped over 2,500 steps.
        Keyword overrides replace any field (a shorter n_steps keeps the ramp's share of the run)."""
        n = overrides.get("n_steps", 3000)   # a shorter run keeps the ramp's share: 2,500 of 3,000 steps
        return cls(**{"recipe": "authors", "n_steps": 3000, "batch_size": 32, "lr_gates": 0.8, "lr_lambdas": 0.8,
                      "warmup_steps": round(n * 2500 / 3000), **overrides})

    @property
    def warmup(self) -> int:
        return int(0.8 * self.n_steps) if self.warmup_steps is None else self.warmup_steps

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> PruneConfig:
        return cls(**data)
