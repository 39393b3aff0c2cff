"""Learn page helpers: ablation choices, the step-by-step pruning stages, the schedule demo, predict-then-check (pure)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

import engine
from engine import Circuit, EdgeGraph, MaskedTransformer, Task
from engine import masks

STAGE_TARGETS = (0.5, 0.8, 0.9, 0.95, 0.98)
STAGE_STEPS = 120      # the most steps one stage may take (it stops once it is at its target)
STAGE_STOP = 0.1       # a stage stops once its sparsity is within this share of its remaining edges, 0.1 * (1 - t)
WITHIN = 0.10          # a stage "reached" its target when |sparsity - target| <= WITHIN * target
SCHEDULE_STEPS = 60    # the schedule demo's real run
LESSON_MODELS = {"IOI": "ioi", "Greater-Than": "greater", "Boolean": "boolean"}
"""Learn's model choice: label -> a part of the embedded model's name."""


def ablation_choices(graph: EdgeGraph) -> list[str]:
    return (["nothing (the full model)", "every edge (= the corrupted run)"]
            + [f"edges out of layer {layer}'s heads and MLP" for layer in range(graph.n_layers)]
            + ["edges out of the input", "edges into the logits"])


def ablation_keep(graph: EdgeGraph, choice: str) -> Tensor:
    """keep [n_src, n_dst] for a choice from ablation_choices: 1 = the edge reads the clean run."""
    keep = graph.real_edges.float()
    if choice.startswith("nothing"):
        return keep
    if choice.startswith("every"):
        return torch.zeros_like(keep)
    if choice.startswith("edges out of layer"):
        layer = int(choice.split("layer ")[1].split("'")[0])
        rows = [graph.src_index(f"a{layer}.h{h}") for h in range(graph.n_heads)] + [graph.src_index(f"m{layer}")]
        keep[rows] = 0.0
    elif choice == "edges out of the input":
        keep[: len(graph.input_nodes)] = 0.0
    elif choice == "edges into the logits":
        keep[:, -1] = 0.0
    else:
        raise ValueError(f"unknown ablation {choice!r}; choose from {ablation_choices(graph)}")
    return keep


def gate_stats(log_alpha: float, beta: float) -> tuple[float, float]:
    """(P(z > 0), the deterministic evaluation score) of one gate."""
    la = torch.tensor(float(log_alpha))
    return float(masks.expected_l0(la, beta)), float(masks.deterministic(la))


# ---- pruning step by step ----
@dataclass(frozen=True)
class Stage:
    """One stage of the step-by-step run: its circuit, its run's log and the circuit measured on the test split."""

    target: float
    circuit: Circuit
    log: engine.PruneLog
    result: engine.EvalResult

    @property
    def reached(self) -> bool:
        return abs(self.circuit.sparsity - self.target) <= WITHIN * self.target


def gate_logits(circuit: Circuit) -> Tensor:
    """log alpha [n_src, n_dst] whose evaluation scores, sigmoid(1.2 log alpha), are the circuit's scores."""
    s = circuit.scores.double().clamp(1e-6, 1 - 1e-6)
    return (torch.logit(s) / masks.DETERMINISTIC_SCALE).float()


def run_stage(model: MaskedTransformer, task: Task, target: float, previous: Circuit | None,
              max_steps: int = STAGE_STEPS) -> Stage:
    """Prune towards `target` from the previous stage's gates (all open for the first), the target held from
    the first step, and stop as soon as the expected sparsity is within STAGE_STOP of it.

    Ramping the target from 0 again each stage (the default warm-up) pulled the sparsity back down, and a fixed
    80-step run reached 0.23 for a 0.5 target; held and stopped at the target, a stage takes a few steps."""
    cfg = engine.PruneConfig(n_steps=max_steps, batch_size=16, edge_sparsity=target, warmup_steps=0, lr_gates=0.2)
    tol = STAGE_STOP * (1 - target)

    def at_target(s: engine.StepLog) -> bool:
        return s.step >= 4 and abs(s.edge_sparsity - target) <= tol

    init = gate_logits(previous) if previous is not None else None
    circuit, log = engine.prune(model, task, cfg, on_step=at_target, init_log_alpha=init)
    return Stage(target, circuit, log, engine.evaluate(model, task, circuit))


def schedule_run(model: MaskedTransformer, task: Task, n_steps: int, warmup: int, target: float) -> engine.PruneLog:
    """A real short run with this schedule (its log holds the achieved sparsity per step)."""
    cfg = engine.PruneConfig(n_steps=n_steps, batch_size=16, edge_sparsity=target, warmup_steps=warmup)
    return engine.prune(model, task, cfg)[1]


# ---- predict, then check ----
def heads(graph: EdgeGraph) -> list[str]:
    return [f"a{layer}.h{h}" for layer in range(graph.n_layers) for h in range(graph.n_heads)]


def head_check(guess: str, last: Stage) -> str:
    """Does the guessed head survive the last stage? Names the heads that do."""
    alive = [n for n in last.circuit.nodes() if n in set(heads(last.circuit.graph))]
    verdict = "survived" if guess in alive else "was pruned away"
    return (f"{guess} {verdict}. At sparsity {last.circuit.sparsity:.1%} the heads still in the circuit are: "
            f"{', '.join(alive) if alive else 'none'}.")


ACCURACY_GUESSES = ("almost all of it (within 10 points)", "about half of it", "little: near chance")


def accuracy_check(guess: str, last: Stage) -> str:
    """How much of the full model's accuracy the last stage keeps, against the guess."""
    r = last.result
    kept = r.accuracy / r.full_accuracy if r.full_accuracy > 0 else 0.0
    actual = ACCURACY_GUESSES[0] if r.full_accuracy - r.accuracy <= 0.10 else (
        ACCURACY_GUESSES[1] if kept >= 0.4 else ACCURACY_GUESSES[2])
    mark = "Right" if guess == actual else "Not quite"
    return (f"{mark}: with {last.circuit.n_edges} of {last.circuit.graph.n_edges} edges the circuit scores "
            f"{r.accuracy:.0%} against the full model's {r.full_accuracy:.0%} on {r.n_examples} test prompts "
            f"({actual}).")
