"""Overlap between circuits and how far above chance it is (hypergeometric test, no scipy); pure."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

from engine.circuit import Circuit

from . import theme


def _log_comb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def hypergeom_sf(k: int, total: int, n_a: int, n_b: int) -> float:
    """P(X >= k) for X ~ Hypergeometric: draw n_b of `total` items of which n_a are marked.

    Summed in log space (log-sum-exp over the upper tail), so it stays exact for tiny p-values.
    """
    if not (0 <= n_a <= total and 0 <= n_b <= total):
        raise ValueError(f"need 0 <= n_a, n_b <= total, got {n_a}, {n_b}, {total}")
    lo, hi = max(0, n_a + n_b - total), min(n_a, n_b)
    k = max(k, lo)
    if k > hi:
        return 0.0
    denom = _log_comb(total, n_b)
    terms = [_log_comb(n_a, i) + _log_comb(total - n_a, n_b - i) - denom for i in range(k, hi + 1)]
    m = max(terms)
    return min(1.0, math.exp(m) * sum(math.exp(t - m) for t in terms))


@dataclass(frozen=True)
class Overlap:
    """Two circuits over the same `total` real edges."""

    a: str
    b: str
    n_a: int
    n_b: int
    shared: int
    total: int

    @property
    def expected(self) -> float:
        """Shared edges expected if the two circuits were random sets of their sizes."""
        return self.n_a * self.n_b / self.total if self.total else 0.0

    @property
    def ratio(self) -> float:
        """Observed over expected overlap (the paper reports ~1,700x for Boolean Expressions)."""
        return self.shared / self.expected if self.expected > 0 else float("nan")

    @property
    def share_of_smaller(self) -> float:
        small = min(self.n_a, self.n_b)
        return self.shared / small if small else float("nan")

    @property
    def p_value(self) -> float:
        return hypergeom_sf(self.shared, self.total, self.n_a, self.n_b)


def pairwise(circuits: Mapping[str, Circuit]) -> list[Overlap]:
    """Overlap of every pair of circuits (same graph required)."""
    names = list(circuits)
    out = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            ca, cb = circuits[a], circuits[b]
            if not ca.graph.same_as(cb.graph):
                raise ValueError(f"{a!r} and {b!r} come from different graphs")
            out.append(Overlap(a, b, ca.n_edges, cb.n_edges, int((ca.keep & cb.keep).sum()), ca.graph.n_edges))
    return out


CUT_MODES = ("as saved", "edge count", "sparsity")


def cut(circuits: Mapping[str, Circuit], mode: str, value: float | None = None) -> dict[str, Circuit]:
    """One threshold for every compared circuit: each as saved, its `value` best edges, or `value` sparsity."""
    if mode == "as saved":
        return dict(circuits)
    if mode == "edge count":
        return {n: c.top_n(int(value)) for n, c in circuits.items()}
    if mode == "sparsity":
        return {n: c.with_sparsity(float(value)) for n, c in circuits.items()}
    raise ValueError(f"unknown cut {mode!r}; choose from {list(CUT_MODES)}")


def group_of(members: list[str], names: list[str]) -> str:
    """The compare group of an edge held by `members`: shared, only:<name>, or partial."""
    return "shared" if len(members) == len(names) else f"only:{members[0]}" if len(members) == 1 else "partial"


def group_counts(circuits: Mapping[str, Circuit]) -> dict[str, int]:
    """Edges per compare group (shared, only:<name>, partial), in legend order; groups with no edge included."""
    names = list(circuits)
    keeps = [circuits[n].keep for n in names]
    held = sum(k.long() for k in keeps)
    out = {"shared": int((held == len(names)).sum())}
    for n, k in zip(names, keeps):
        out[f"only:{n}"] = int((k & (held == 1)).sum())
    if len(names) > 2:
        out["partial"] = int(((held > 1) & (held < len(names))).sum())
    return out


def by_layer(circuits: Mapping[str, Circuit]) -> list[dict]:
    """Edges per (reader's layer, compare group): rows {"layer": str, "group": str, "edges": int}.

    An edge belongs to the layer of the node that reads it (`logits` for the unembedding), so a bar says where
    in the model the circuits agree.
    """
    names = list(circuits)
    graph = circuits[names[0]].graph
    counts: dict[tuple[str, str], int] = {}
    union = sum(c.keep.long() for c in circuits.values()) > 0
    for i, j in union.nonzero().tolist():
        members = [n for n in names if bool(circuits[n].keep[i, j])]
        reader = graph.dst_names[j].split("<", 1)[0]
        layer = "logits" if reader == "logits" else f"layer {int(graph.node_layer(reader))}"
        key = (layer, group_of(members, names))
        counts[key] = counts.get(key, 0) + 1
    return [{"layer": lay, "group": grp, "edges": k} for (lay, grp), k in sorted(counts.items())]


def layer_chart_spec(rows: list[dict], legend: dict[str, tuple[str, str]]) -> dict:
    """Vega-Lite stacked bars of `by_layer` rows; `legend` maps group -> (label, colour). The data sits in the
    layer, not at the top: Streamlit draws a top-level dataset once empty first (a console warning)."""
    data = [{**r, "label": legend[r["group"]][0]} for r in rows]
    labels = [lab for lab, _ in legend.values()]
    bars = {"data": {"values": data}, "mark": {"type": "bar"},
            "encoding": {"x": {"field": "layer", "type": "nominal", "sort": None, "title": "edges read in"},
                         "y": {"field": "edges", "type": "quantitative", "title": "edges", "stack": "zero"},
                         "color": {"field": "label", "type": "nominal", "title": None,
                                   "scale": {"domain": labels, "range": [c for _, c in legend.values()]},
                                   "legend": {"orient": "top", "labelLimit": 400}},
                         "tooltip": [{"field": "layer"}, {"field": "label", "title": "group"}, {"field": "edges"}]}}
    return {"$schema": theme.VEGA_LITE_SCHEMA, "height": 220, "layer": [bars]}


def combine(circuits: Mapping[str, Circuit], op: str) -> Circuit:
    """Intersection ("&") or union ("|") of the circuits, its metadata naming the parents and their tasks.

    The task is the parents' task when they share one, else their tasks joined with " & " (no single task).
    """
    if op not in ("&", "|"):
        raise ValueError(f"op must be '&' or '|', got {op!r}")
    items = list(circuits.items())
    out = items[0][1]
    for _, c in items[1:]:
        out = out & c if op == "&" else out | c
    tasks = list(dict.fromkeys(c.meta.get("task", "") for _, c in items if c.meta.get("task")))
    parents = [{"name": n, "task": c.meta.get("task", ""), "edges": c.n_edges} for n, c in items]
    kind = "intersection" if op == "&" else "union"
    meta = {**{k: v for k, v in out.meta.items() if k != "operands"}, "method": kind, "parents": json.dumps(parents), "task": " & ".join(tasks),
            "name": f"{kind}-" + "-".join(n for n, _ in items)}
    return replace(out, meta=meta)
