"""What a faithfulness budget asks for and how the search runs (torch-free: the Prune form reads it before torch loads).

`engine.budget.prune_to_budget` does the search; `engine.experiment` uses the defaults below.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Literal

from .config import PruneConfig

if TYPE_CHECKING:
    from .evaluate import EvalResult

UNFAITHFUL_BELOW = 0.9   # a circuit keeping less than this share of the model's metric or accuracy is flagged


@dataclass(frozen=True)
class Budget:
    """What the circuit must keep on the validation split.

    kind "metric": circuit task metric >= value x the full model's; "accuracy": the same for accuracy;
    "kl": mean KL(model || circuit) <= value nats.
    """

    kind: Literal["metric", "accuracy", "kl"]
    value: float

    def __post_init__(self) -> None:
        if self.kind not in ("metric", "accuracy", "kl"):
            raise ValueError(f"unknown budget kind {self.kind!r}; choose from ['accuracy', 'kl', 'metric']")
        if not math.isfinite(self.value):
            raise ValueError(f"the budget must be a finite number, got {self.value}")
        if self.kind == "kl" and self.value <= 0:
            raise ValueError(f"a KL budget must be > 0 nats, got {self.value}")
        if self.kind != "kl" and not 0.0 < self.value <= 1.0:
            raise ValueError(f"the share to keep must be in (0, 1] (0.9 = 90%), got {self.value}")

    def measure(self, r: EvalResult) -> float:
        """The budgeted quantity of one evaluation: a share of the full model (metric, accuracy) or the KL."""
        if self.kind == "kl":
            return r.kl
        full, got = (r.full_metric, r.metric) if self.kind == "metric" else (r.full_accuracy, r.accuracy)
        if full <= 0:
            raise ValueError(f"the full model's {r.metric_name if self.kind == 'metric' else 'accuracy'} is "
                             f"{full:.4g} on this split, so a share of it is undefined; use a KL budget (CLI: --max-kl)")
        return got / full

    def met(self, r: EvalResult, margin: float = 0.0) -> bool:
        """Within budget; `margin` asks for that much more (a share: + margin; a KL: x (1 - margin))."""
        v = self.measure(r)
        return v <= self.value * (1.0 - margin) if self.kind == "kl" else v >= self.value + margin

    def describe(self, metric_name: str = "metric") -> str:
        if self.kind == "kl":
            return f"KL <= {self.value:g} nats"
        return f"keep >= {self.value:.0%} of the model's {metric_name if self.kind == 'metric' else 'accuracy'}"


@dataclass(frozen=True)
class BudgetConfig:
    """The search: the first run, then up to `max_refines` short warm-started runs at smaller sizes."""

    prune: PruneConfig = field(default_factory=PruneConfig)  # the first run (its edge_sparsity = first target)
    refine_steps: int = 200       # steps of each warm-started run at a smaller size
    max_refines: int = 3          # warm-started runs (0 = the first run's ranking only)
    shrink: float = 0.7           # the next size tried = shrink x the best passing size
    eval_limit: int | None = None  # validation examples per evaluation (None = the whole split)
    # Selection asks for this much more than the budget on validation: the search keeps the best of many noisy
    # measurements, so a circuit just at the budget there tends to fall below it on new prompts (greater-than-2l,
    # 64 validation prompts, no margin: 0.918 of the metric on validation, 0.794 on test).
    margin: float = 0.03

    def __post_init__(self) -> None:
        if self.refine_steps < 1 or self.max_refines < 0:
            raise ValueError("refine_steps must be >= 1 and max_refines >= 0")
        if not 0.0 <= self.margin < 1.0:
            raise ValueError(f"margin must be in [0, 1), got {self.margin}")
        if not 0.0 < self.shrink < 1.0:
            raise ValueError(f"shrink must be in (0, 1), got {self.shrink}")

    def to_dict(self) -> dict:
        return {**asdict(self), "prune": self.prune.to_dict()}


@dataclass(frozen=True)
class FrontierPoint:
    """One evaluated circuit of the search (validation split)."""

    n_edges: int
    sparsity: float
    value: float      # the budgeted quantity (share kept, or KL)
    kl: float
    metric: float
    accuracy: float
    passed: bool
    source: str       # "run 0" (a run's own circuit), "cut 0" (a top-k cut of run 0's scores), ...


# The embedded models' default: the sparsest circuit found keeping 90% of the task metric on validation,
# from a 300-step first run and up to three 100-step warm-started runs (the sweep in assets/MODELS.md).
DEFAULT_BUDGET = Budget("metric", 0.9)
DEFAULT_SEARCH = BudgetConfig(PruneConfig(n_steps=300), refine_steps=100, max_refines=3)


def frontier_record(circuit: object) -> dict | None:
    """The search record a budget circuit carries in its metadata (`meta["budget"]`, JSON), else None."""
    import json  # noqa: PLC0415

    raw = getattr(circuit, "meta", {}).get("budget")
    return json.loads(raw) if raw else None
