"""The paper's experiment as one call: two circuits of one model (e.g. instruction vs few-shot Boolean prompts),
each evaluated on its own and the other's prompts, their intersection on both, and the share of each circuit's
performance the intersection keeps. `faithful_defaults` is what "prune with the defaults" means for a model.
"""

from __future__ import annotations

from dataclasses import dataclass

from .budget_spec import DEFAULT_BUDGET, DEFAULT_SEARCH  # noqa: F401 - "prune with the defaults"
from .circuit import Circuit
from .evaluate import EvalResult, evaluate_many
from .model import MaskedTransformer
from .tasks.base import Task

ROWS = ("a", "b", "intersection", "full model")


@dataclass(frozen=True)
class CrossEval:
    """Rows a, b, intersection, full model; columns the two tasks. `results[row][task]` is an EvalResult."""

    names: tuple[str, str]          # display names of circuits a and b
    tasks: tuple[str, str]          # their tasks (a was found on tasks[0], b on tasks[1])
    results: dict[str, dict[str, EvalResult]]
    n_intersection: int

    def share(self, row: str, of: str, task: str) -> float | None:
        """metric(row) / metric(of) on `task`; None (n/a) when the reference metric is not positive."""
        ref = self.results[of][task].metric
        return self.results[row][task].metric / ref if ref > 0 else None

    def intersection_shares(self) -> dict[str, float | None]:
        """The intersection's share of each circuit's own performance (on that circuit's own task)."""
        return {self.names[0]: self.share("intersection", "a", self.tasks[0]),
                self.names[1]: self.share("intersection", "b", self.tasks[1])}


def cross_evaluate(model: MaskedTransformer, a: Circuit, b: Circuit, task_a: Task, task_b: Task,
                   names: tuple[str, str] = ("a", "b"), split: str = "test") -> CrossEval:
    """Each circuit, their intersection and the full model on both tasks (`split` of each).

    Raises:
        ValueError: circuits of different graphs, or a graph that is not the model's.
    """
    inter = a & b
    circuits = [a, b, inter, Circuit.full(model.graph)]
    results: dict[str, dict[str, EvalResult]] = {r: {} for r in ROWS}
    tasks = (task_a.name, task_b.name) if task_a.name != task_b.name else (task_a.name, task_b.name + " (b)")
    for key, task in zip(tasks, (task_a, task_b)):
        for row, r in zip(ROWS, evaluate_many(model, task, circuits, split)):
            results[row][key] = r
    return CrossEval(names, tasks, results, inter.n_edges)
