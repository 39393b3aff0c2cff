"""Whether a pruning run reached its edge-sparsity target, and what to change when it did not (CLI and app)."""

from __future__ import annotations

import math
from dataclasses import dataclass

TOLERANCE = 0.005
"""A run counts as short when it removed fewer edges than the target by more than this share and one edge: the
discretised circuit follows the expected sparsity, which trails the target by a fraction of a percent."""

CLI_NAMES = {"steps": "--steps", "lr_lambdas": "--lr-lambdas", "warmup": "--warmup"}
"""How the CLI spells the settings the advice names (the app passes its form's labels)."""


@dataclass(frozen=True)
class TargetMiss:
    """A run whose circuit is less sparse than its target asked for."""

    target: float        # the configured edge sparsity (at most 1)
    reached: float       # the saved circuit's edge sparsity (share of edges removed)
    kept: int            # edges the circuit keeps
    total: int           # edges of the model's graph
    target_kept: int     # edges the target would keep

    @property
    def short(self) -> float:
        return self.target - self.reached


def floor_sparsity(sparsity: float, digits: int = 3) -> str:
    """`sparsity` rounded down (a run just short of 0.95 reads 0.949, never 0.950), for names and messages."""
    scale = 10**digits
    return f"{math.floor(sparsity * scale + 1e-9) / scale:.{digits}f}"


def target_miss(target: float, n_kept: int, n_total: int) -> TargetMiss | None:
    """The miss of a circuit keeping `n_kept` of `n_total` edges against the edge-sparsity `target`.

    Returns:
        None when the circuit is within `TOLERANCE` (and one edge) of the target, or when the target is above 1
        ("as sparse as possible": no sparsity can be short of it).
    """
    if target > 1.0 or n_total <= 0:
        return None
    reached = 1.0 - n_kept / n_total
    if target - reached <= max(TOLERANCE, 1.0 / n_total) + 1e-12:
        return None
    return TargetMiss(target, reached, n_kept, n_total, max(0, round((1.0 - target) * n_total)))


def advice(miss: TargetMiss, n_steps: int, lr_lambdas: float, steps_done: int, last_target: float | None,
           names: dict[str, str] = CLI_NAMES) -> str:
    """One sentence on the miss (by how much) and what to change.

    Args:
        miss: from target_miss.
        n_steps, lr_lambdas: the run's planned steps and multiplier learning rate.
        steps_done: steps the run took (fewer than n_steps when it was stopped).
        last_target: the target ramp's value at the last step (None: no step ran).
        names: how the settings are spelled where the user changes them (CLI flags or form labels).
    """
    head = (f"The circuit reached edge sparsity {floor_sparsity(miss.reached)}, {miss.short:.3f} short of the "
            f"target {miss.target:g} ({miss.kept:,} of {miss.total:,} edges kept; the target keeps about "
            f"{miss.target_kept:,}).")
    if steps_done < n_steps:
        return (f"{head} The run stopped after {steps_done} of {n_steps} steps, before the target ramp ended: "
                f"run all the steps.")
    if last_target is not None and last_target < miss.target - 1e-9:
        return (f"{head} The target ramp only got to {last_target:.3f} by the last step: make "
                f"{names['warmup']} shorter than {names['steps']}.")
    return (f"{head} Train longer or push the sparsity harder: more steps ({names['steps']}, e.g. {2 * n_steps} "
            f"instead of {n_steps}) or a higher multiplier learning rate ({names['lr_lambdas']}, e.g. "
            f"{2 * lr_lambdas:g} instead of {lr_lambdas:g}).")
