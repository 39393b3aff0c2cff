"""Every method side by side on one model and task: circuits, wall-clock, MIB faithfulness, the random baseline."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from .circuit import Circuit
from .faithfulness import MIB_SIZES, Curve, RandomBaseline, curve, curve_of_keeps, edge_counts, random_baseline
from .methods import METHODS, make_config
from .methods.common import NoPathError
from .methods.warmstart import EdgePruningConfig, init_from_circuit, warm_start
from .prune import prune
from .model import MaskedTransformer
from .tasks.base import Task


@dataclass(frozen=True)
class MethodRun:
    """One method's result: its circuit (scores + own selection), wall-clock seconds, faithfulness curve."""

    label: str
    method: str
    circuit: Circuit
    seconds: float
    curve: Curve


@dataclass(frozen=True)
class Comparison:
    """All runs on one task, the random baseline at the same sizes, and the methods that failed (label -> why)."""

    task: str
    model: str
    runs: list[MethodRun]
    random: RandomBaseline
    errors: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)   # label -> e.g. why its own selection was not used

    def to_dict(self) -> dict:
        return {"task": self.task, "model": self.model, "random": self.random.to_dict(), "errors": self.errors,
                "notes": self.notes,
                "runs": [{"label": r.label, "method": r.method, "seconds": r.seconds, "n_edges": r.circuit.n_edges,
                          "curve": r.curve.to_dict()} for r in self.runs]}


def default_runs(names: Sequence[str] = ("edge-pruning", "eap", "eap-ig", "acdc", "random"),
                 **options: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """(label, method, config) for each name; `options[name]` overrides that method's defaults."""
    return [(n, n, make_config(n, **options.get(n, {}))) for n in names]


def compare_methods(model: MaskedTransformer, task: Task, runs: Sequence[tuple[str, str, Any]],
                    sizes: Sequence[float] = MIB_SIZES, split: str = "test", random_draws: int = 5,
                    on_step: Callable[[dict[str, Any]], None] | None = None) -> Comparison:
    """Run each (label, method, config) on `task`'s train split; score its ranking on `split` at `sizes`.

    A method whose own selection leaves no path is still scored by its ranking (its curve says, per size, where no
    path exists and which size was measured instead; `notes` says why); another ValueError is listed in `errors`.

    Raises:
        ValueError: bad sizes.
    """
    done, errors, notes = [], {}, {}
    for label, method, cfg in runs:
        relay = None if on_step is None else (lambda e, label=label: on_step({**e, "label": label}))
        t0 = time.perf_counter()
        try:
            if method == PER_SIZE:
                done.append(per_size_run(model, task, label, cfg, sizes, split))
                continue
            circuit = METHODS[method](model, task, cfg, relay)
        except NoPathError as e:   # its ranking still exists: measured per size below
            circuit, notes[label] = e.circuit, f"{e}; its ranking is scored at the sizes below"
        except ValueError as e:
            errors[label] = str(e)
            continue
        seconds = time.perf_counter() - t0
        done.append(MethodRun(label, method, circuit, seconds, curve(model, task, circuit, sizes, split)))
    base = random_baseline(model, task, sizes, random_draws, split=split)
    return Comparison(task.name, model.name, done, base, errors, notes)


PER_SIZE = "edge-pruning-per-size"
"""Edge Pruning scored as MIB scores it: a circuit trained for each size, not one run's ranking cut at every size."""


@dataclass(frozen=True)
class PerSizeConfig:
    """One Edge Pruning run per circuit size, largest first; each later run starts from the previous circuit's
    top edges at the new size."""

    first: EdgePruningConfig = field(default_factory=EdgePruningConfig)  # the largest size's run (its init: open/eap-ig)
    steps_next: int = 150    # steps of each warm-started run at the next smaller size


def per_size_run(model: MaskedTransformer, task: Task, label: str, cfg: PerSizeConfig, sizes: Sequence[float],
                 split: str = "test") -> MethodRun:
    """Edge Pruning trained at every size below 100% (target sparsity 1 - size), largest first, each run
    warm-started from the previous size's circuit (its top edges for this size open, the others closed); f at a
    size is that size's own circuit cut to exactly the size's edge count. The returned circuit is the smallest
    size's."""
    t0 = time.perf_counter()
    n = model.graph.n_edges
    counts = edge_counts(n, sizes)
    keeps, prev = {}, None
    for size, k in sorted(zip(sizes, counts), reverse=True):
        if k >= n:
            continue
        if prev is None:
            pcfg = replace(cfg.first.prune_config(), edge_sparsity=1.0 - k / n)
            init = warm_start(model, task, replace(cfg.first, prune=pcfg))
        else:   # start at this size: the larger circuit's top k edges open, the rest closed; no ramp from 0
            pcfg = replace(cfg.first.prune, edge_sparsity=1.0 - k / n, n_steps=cfg.steps_next, warmup_steps=0)
            # Opening all of the larger circuit's edges instead (a sparsity gap of up to 0.3 at step 0) made the
            # multipliers slam gates shut: greater-than-2l's 22-edge circuit kept KL 0.15 (f 0.70) where one run
            # trained for 22 edges reaches 0.0066 (f 0.99); started at the size, 0.0000 (f 1.00).
            init = init_from_circuit(prev, k / n)
        circuit, _ = prune(model, task, pcfg, init_log_alpha=init)
        prev = circuit.top_n(k)
        keeps[size] = prev.keep
    full = Circuit.full(model.graph).keep
    stacked = torch.stack([keeps.get(s, full) for s in sizes])
    cur = curve_of_keeps(model, task, stacked, sizes, PER_SIZE, split)
    meta = {**prev.meta, "method": PER_SIZE, "init": cfg.first.init} if prev is not None else {}
    last = prev if prev is not None else Circuit.full(model.graph)
    return MethodRun(label, PER_SIZE, replace(last, meta=meta or last.meta), time.perf_counter() - t0, cur)


def _pct(size: float) -> str:
    return f"{100 * size:g}%"


def _cells(values: Sequence[float | None], width: int = 8) -> str:
    return "".join(f"{'n/a':>{width}}" if v is None else f"{v:>{width}.3f}" for v in values)


def format_table(cmp: Comparison) -> str:
    """The comparison as a fixed-width text table: f at each size, CPR, CMD, edges and seconds per method; the
    KL at each size instead when f is undefined (the full model scores like the empty circuit)."""
    sizes, rb = cmp.random.sizes, cmp.random
    why = rb.undefined or next((r.curve.undefined for r in cmp.runs if r.curve.undefined), "")
    head = f"{'method':<22}{'sec':>8}{'edges':>7}" + "".join(f"{_pct(s):>8}" for s in sizes) + f"{'CPR':>8}{'CMD':>8}"
    what = ("KL(full || C) in nats (lower is better)" if why else
            "faithfulness f = (m(C) - m(empty)) / (m(full) - m(empty))")
    lines = [f"task {cmp.task}, model {cmp.model}: {what} of the top edges at each size", head, "-" * len(head)]
    for r in cmp.runs:
        row = r.curve.kl if why else r.curve.faithfulness
        lines.append(f"{r.label:<22}{r.seconds:>8.2f}{r.circuit.n_edges:>7}" + _cells(row)
                     + _cells([None if why else r.curve.cpr, None if why else r.curve.cmd]))
    if why:
        lines.append(f"{f'random x{rb.draws} (mean)':<22}{'':>8}{'':>7}" + _cells(rb.kl_mean) + _cells([None, None]))
    else:
        lines.append(f"{f'random x{rb.draws} (mean)':<22}{'':>8}{'':>7}" + _cells(rb.mean)
                     + _cells([rb.cpr_mean, rb.cmd_mean]))
        lines.append(f"{'random (std)':<22}{'':>8}{'':>7}" + _cells(rb.std) + _cells([rb.cpr_std, rb.cmd_std]))
    lines.append(f"{'edges at size':<22}{'':>8}{'':>7}" + "".join(f"{n:>8}" for n in rb.n_edges))
    if why:
        lines.append(why)
    for r in cmp.runs:
        c = r.curve
        for size, n, ok, used, near in zip(c.sizes, c.n_edges, c.path, c.evaluated_edges, c.nearest):
            if not ok:
                then = "" if why or near is None else f" (f = {near:.3f})"
                lines.append(f"{r.label}: no path from the input to logits at {_pct(size)} ({n} edges): scored as the "
                             f"empty circuit there, as MIB does; its fewest top edges with a path: {used}{then}")
    lines += [f"{label}: {msg}" for label, msg in cmp.notes.items()]
    lines += [f"{label}: failed: {msg}" for label, msg in cmp.errors.items()]
    return "\n".join(lines)


def sizes_from_sparsities(sparsities: Sequence[float]) -> list[float]:
    """Sparsities (share removed) -> sizes (share kept), ascending; 100% is appended for the area, as MIB."""
    bad = [s for s in sparsities if not 0.0 <= s < 1.0]
    if bad:
        raise ValueError(f"sparsities must be in [0, 1), got {bad}")
    sizes = sorted({round(1.0 - s, 9) for s in sparsities})
    return sizes if sizes[-1] == 1.0 else sizes + [1.0]
