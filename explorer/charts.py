"""Plotly figures: pruning curves, faithfulness vs sparsity, score histogram, gate and schedule plots (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from engine import masks

from . import theme

VEGA_LITE_SCHEMA = theme.VEGA_LITE_SCHEMA
PLOTLY_CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "scale": 2}}


def plotly_config(fmt: str = "png") -> dict:
    """Modebar config whose camera button downloads the chart as `fmt` (png or svg)."""
    return {**PLOTLY_CONFIG, "toImageButtonOptions": {"format": fmt, "scale": 2}}


def _layout(fig: go.Figure, title: str, height: int = theme.CHART_HEIGHT) -> go.Figure:
    # the legend goes below the x-axis title (at y=-0.2 the two overlapped)
    fig.update_layout(title=title, height=height, margin={"l": 40, "r": 20, "t": 50, "b": 40},
                      legend={"orientation": "h", "yanchor": "top", "y": -0.22})
    return fig


LOSS_TITLES = {"kl": ("KL", "KL to the full model (nats)"), "mse": ("squared error", "squared error to the full model")}
"""Task.loss -> (trace name, panel title) of the faithfulness term of the pruning objective."""


def prune_curves(steps: Sequence[Any], loss: str = "kl") -> go.Figure:
    """The faithfulness loss (left) and edge / node sparsity with their targets (right) against the step.

    Args:
        steps: StepLog-like objects (step, kl, edge_sparsity, edge_target, node_sparsity, node_target); `kl` holds
            the task's faithfulness loss, KL or (Tracr programs) squared error.
        loss: the task's loss name, for the labels.

    Returns:
        Traces: loss, edge sparsity, edge target, then node sparsity and node target when node gates are on.
    """
    name, title = LOSS_TITLES.get(loss, (loss, f"{loss} to the full model"))
    fig = make_subplots(rows=1, cols=2, subplot_titles=(title, "sparsity"))
    x = [s.step for s in steps]
    fig.add_trace(go.Scatter(x=x, y=[s.kl for s in steps], name=name, line={"color": theme.CHART_COLORS["kl"]}), 1, 1)
    fig.add_trace(go.Scatter(x=x, y=[s.edge_sparsity for s in steps], name="edge sparsity",
                             line={"color": theme.CHART_COLORS["edge_sparsity"]}), 1, 2)
    fig.add_trace(go.Scatter(x=x, y=[s.edge_target for s in steps], name="edge target",
                             line={"color": theme.CHART_COLORS["edge_target"], "dash": "dash"}), 1, 2)
    if any(getattr(s, "node_sparsity", None) is not None for s in steps):
        fig.add_trace(go.Scatter(x=x, y=[s.node_sparsity for s in steps], name="node sparsity",
                                 line={"color": theme.CHART_COLORS["node_sparsity"]}), 1, 2)
        fig.add_trace(go.Scatter(x=x, y=[s.node_target for s in steps], name="node target",
                                 line={"color": theme.CHART_COLORS["node_target"], "dash": "dash"}), 1, 2)
    fig.update_xaxes(title_text="step")
    return _layout(fig, "")


def prune_curves_spec(rows: Sequence[dict], loss: str = "kl") -> dict:
    """Vega-Lite: the faithfulness loss (left) and edge / node sparsity with their dashed targets (right).

    The Prune page's live view: a spec of a few hundred points costs the server ~1 ms and the browser a
    redraw of two small SVG panels, where the plotly figure (prune_curves) cost ~100 ms to build and a heavy
    redraw, every second, on the cores the run needs (bench/watch_cost.py).

    Args:
        rows: StepLog fields as dicts (explorer.runs.step_row), already thinned.
        loss: the task's loss name, for the labels.

    Returns:
        A spec with two panels: one line (the loss) and one line per sparsity series.
    """
    name, title = LOSS_TITLES.get(loss, (loss, f"{loss} to the full model"))
    series = [("edge sparsity", "edge_sparsity"), ("edge target", "edge_target")]
    if any(r.get("node_sparsity") is not None for r in rows):
        series += [("node sparsity", "node_sparsity"), ("node target", "node_target")]
    values = [{"step": r["step"], name: r["kl"], **{label: r.get(key) for label, key in series}} for r in rows]
    x = {"field": "step", "type": "quantitative", "title": "step"}
    left = {"title": title, "width": 320, "height": 220, "mark": {"type": "line", "color": theme.CHART_COLORS["kl"]},
            "encoding": {"x": x, "y": {"field": name, "type": "quantitative", "title": name},
                         "tooltip": [{"field": "step"}, {"field": name, "format": ".4f"}]}}
    labels, colors = [label for label, _ in series], [theme.CHART_COLORS[k] for _, k in series]
    right = {"title": "sparsity", "width": 320, "height": 220, "mark": {"type": "line"},
             "transform": [{"fold": labels, "as": ["series", "value"]}],
             "encoding": {"x": x, "y": {"field": "value", "type": "quantitative", "title": "share removed"},
                          "color": {"field": "series", "type": "nominal", "sort": labels,
                                    "legend": {"orient": "bottom"}, "scale": {"domain": labels, "range": colors}},
                          "strokeDash": {"field": "series", "type": "nominal", "sort": labels, "legend": None,
                                         "scale": {"domain": labels,
                                                   "range": [[4, 4] if "target" in k else [1, 0] for _, k in series]}},
                          "tooltip": [{"field": "step"}, {"field": "series"}, {"field": "value", "format": ".4f"}]}}
    return {"$schema": VEGA_LITE_SCHEMA, "data": {"values": values},
            "hconcat": [left, right]}


def faithfulness_spec(points: Sequence[Any], current: Any | None = None, full_metric: float | None = None) -> dict:
    """Vega-Lite: KL and the task metric against circuit size (log x), the current threshold marked.

    Vega-Lite rather than plotly because the Circuit page redraws this while measurements arrive:
    a small JSON spec costs ~1 ms, a plotly figure ~100 ms, and that time would delay the slider.
    Its action menu saves PNG and SVG.

    Args:
        points: EvalResult-like (n_edges, kl, metric, metric_name).
        current: the EvalResult at the current threshold, or None.
        full_metric: the full model's task metric (a dotted rule), or None.

    Returns:
        A spec with two panels (KL, metric); each has a line layer, plus a point layer when `current` is given.
    """
    pts = sorted(points, key=lambda p: p.n_edges)
    name = pts[0].metric_name if pts else (current.metric_name if current else "metric")
    rows = [{"edges": max(p.n_edges, 1), "KL (nats)": p.kl, name: p.metric} for p in pts]
    now = [{"edges": max(current.n_edges, 1), "KL (nats)": current.kl, name: current.metric}] if current else []

    def panel(field: str, color: str, rule: float | None) -> dict:
        x = {"field": "edges", "type": "quantitative", "scale": {"type": "log"}, "title": "edges in circuit"}
        layers = [{"data": {"values": rows}, "mark": {"type": "line", "point": True, "color": color},
                   "encoding": {"x": x, "y": {"field": field, "type": "quantitative", "title": field},
                                "tooltip": [{"field": "edges"}, {"field": field, "format": ".4f"}]}}]
        if now:
            layers.append({"data": {"values": now}, "mark": {"type": "point", "shape": "cross", "size": 250,
                                                             "color": theme.CHART_COLORS["current"], "filled": True},
                           "encoding": {"x": x, "y": {"field": field, "type": "quantitative", "title": field}}})
        if rule is not None:
            layers.append({"data": {"values": [{"full": rule}]}, "mark": {"type": "rule", "strokeDash": [4, 4],
                                                                         "color": theme.CHART_COLORS["full"]},
                           "encoding": {"y": {"field": "full", "type": "quantitative", "title": field}}})
        return {"title": field, "width": 320, "height": 220, "layer": layers}

    # "pad": Streamlit asks for autosize "fit", which Vega-Lite cannot apply to concatenated panels (a warning)
    return {"$schema": VEGA_LITE_SCHEMA, "autosize": {"type": "pad"},
            "title": "Faithfulness vs circuit size (× = this threshold; dotted = full model)",
            "hconcat": [panel("KL (nats)", theme.CHART_COLORS["kl"], None),
                        panel(name, theme.CHART_COLORS["circuit"], full_metric)]}


def histogram_spec(scores: Sequence[float], threshold: float | None = None, bins: int = 50) -> dict:
    """Vega-Lite histogram of edge scores (binned here, so the spec stays small), threshold as a rule."""
    t = torch.tensor(list(scores), dtype=torch.float64)
    lo, hi = (float(t.min()), float(t.max())) if t.numel() else (0.0, 1.0)
    hi = hi if hi > lo else lo + 1.0
    counts = torch.histc(t, bins=bins, min=lo, max=hi).tolist() if t.numel() else [0.0] * bins
    w = (hi - lo) / bins
    rows = [{"from": lo + i * w, "to": lo + (i + 1) * w, "edges": c} for i, c in enumerate(counts) if c > 0]
    layers = [{"data": {"values": rows}, "mark": {"type": "bar", "color": theme.CHART_COLORS["circuit"]},
               # "binned" draws each bar from zero (with a plain x/x2 range vega-lite draws thin horizontal strips)
               # a bin edge per tick made 50 overlapping labels; a few rounded ticks can be read off
               "encoding": {"x": {"field": "from", "type": "quantitative", "bin": "binned", "title": "edge score",
                                  "axis": {"tickCount": 8, "format": ".2~f", "labelOverlap": True}},
                            "x2": {"field": "to"},
                            "y": {"field": "edges", "type": "quantitative", "scale": {"type": "symlog"},
                                  "title": "edges (symlog scale)", "axis": {"tickCount": 5, "format": "~s"}},
                            "tooltip": [{"field": "from", "format": ".3f"}, {"field": "edges"}]}}]
    if threshold is not None:
        layers.append({"data": {"values": [{"t": threshold}]},
                       "mark": {"type": "rule", "color": theme.CHART_COLORS["current"], "strokeDash": [4, 4]},
                       "encoding": {"x": {"field": "t", "type": "quantitative"}}})
    return {"$schema": VEGA_LITE_SCHEMA, "title": "Edge scores (dashed = threshold)",
            "width": "container", "height": 200, "layer": layers}


def hard_concrete(log_alpha: float, beta: float = masks.HC_BETA, n: int = 20000, seed: int = 0) -> go.Figure:
    """Samples of one hard-concrete gate: a histogram of z in (0, 1) plus the point masses at 0 and 1.

    Returns:
        Traces: the continuous part, P(z = 0), P(z = 1).
    """
    g = torch.Generator().manual_seed(seed)
    z = masks.sample(torch.full((n,), float(log_alpha)), beta=beta, generator=g)
    inner = z[(z > 0) & (z < 1)]
    fig = go.Figure()
    fig.add_trace(go.Histogram(x=inner.tolist(), xbins={"start": 0, "end": 1, "size": 0.025}, histnorm="probability",
                               name="0 < z < 1", marker={"color": theme.CHART_COLORS["circuit"]}))
    p0, p1 = float((z == 0).float().mean()), float((z == 1).float().mean())
    fig.add_trace(go.Bar(x=[0.0], y=[p0], width=0.02, name=f"P(z=0) = {p0:.2f}", marker={"color": theme.CHART_COLORS["kl"]}))
    fig.add_trace(go.Bar(x=[1.0], y=[p1], width=0.02, name=f"P(z=1) = {p1:.2f}", marker={"color": theme.CHART_COLORS["node_sparsity"]}))
    fig.update_xaxes(title_text="gate z", range=[-0.05, 1.05])
    fig.update_yaxes(title_text="probability")
    return _layout(fig, f"Hard-concrete gate, log α = {log_alpha:g}, β = {beta:.2f}")


def sparsity_schedule(n_steps: int, warmup: int, target: float, steps: Sequence[Any] = ()) -> go.Figure:
    """The target ramp 0 -> target over `warmup` steps; the achieved sparsity of a run if given."""
    xs = list(range(0, n_steps + 1, max(1, n_steps // 200)))
    ys = [target * min(1.0, x / warmup) if warmup > 0 else target for x in xs]
    fig = go.Figure(go.Scatter(x=xs, y=ys, name="target", line={"color": theme.CHART_COLORS["edge_target"], "dash": "dash"}))
    if steps:
        fig.add_trace(go.Scatter(x=[s.step for s in steps], y=[s.edge_sparsity for s in steps], name="achieved",
                                 line={"color": theme.CHART_COLORS["edge_sparsity"]}))
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(title_text="edge sparsity", range=[0, max(1.0, target) + 0.05])
    return _layout(fig, "Sparsity schedule")


def prediction_bars(labels: Sequence[str], probs: Sequence[float], title: str) -> go.Figure:
    """Horizontal bars of top-k next-token probabilities. One trace."""
    fig = go.Figure(go.Bar(x=list(probs), y=[repr(t) for t in labels], orientation="h",
                           marker={"color": theme.CHART_COLORS["circuit"]}))
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title_text="probability", range=[0, 1])
    return _layout(fig, title, height=240)
