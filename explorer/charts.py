"""Plotly figures: pruning curves, faithfulness vs sparsity, score histogram, gate and schedule plots (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from engine import masks

from . import theme

PLOTLY_CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "scale": 2}}


def plotly_config(fmt: str = "png") -> dict:
    """Modebar config whose camera button downloads the chart as `fmt` (png or svg)."""
    return {**PLOTLY_CONFIG, "toImageButtonOptions": {"format": fmt, "scale": 2}}


def _layout(fig: go.Figure, title: str, height: int = theme.CHART_HEIGHT) -> go.Figure:
    fig.update_layout(title=title, height=height, margin={"l": 40, "r": 20, "t": 50, "b": 40},
                      legend={"orientation": "h", "y": -0.2})
    return fig


def prune_curves(steps: Sequence[Any]) -> go.Figure:
    """KL (left) and edge / node sparsity with their targets (right) against the step.

    Args:
        steps: StepLog-like objects (step, kl, edge_sparsity, edge_target, node_sparsity, node_target).

    Returns:
        Traces: KL, edge sparsity, edge target, then node sparsity and node target when node gates are on.
    """
    fig = make_subplots(rows=1, cols=2, subplot_titles=("KL to the full model (nats)", "sparsity"))
    x = [s.step for s in steps]
    fig.add_trace(go.Scatter(x=x, y=[s.kl for s in steps], name="KL", line={"color": theme.CHART_COLORS["kl"]}), 1, 1)
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


def faithfulness_curve(points: Sequence[Any], current: Any | None = None, full: Any | None = None) -> go.Figure:
    """KL and the task metric of the circuit against its edge count, the current threshold marked.

    Args:
        points: EvalResult-like (n_edges, sparsity, kl, metric, metric_name).
        current: the EvalResult at the current threshold (a red marker), or None.
        full: the full model's EvalResult (a dotted metric line), or None.

    Returns:
        Traces: KL, metric, [current KL, current metric], [full-model metric].
    """
    pts = sorted(points, key=lambda p: p.n_edges)
    name = pts[0].metric_name if pts else (current.metric_name if current else "metric")
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Scatter(x=[p.n_edges for p in pts], y=[p.kl for p in pts], name="KL (nats)", mode="lines+markers",
                             line={"color": theme.CHART_COLORS["kl"]}), secondary_y=False)
    fig.add_trace(go.Scatter(x=[p.n_edges for p in pts], y=[p.metric for p in pts], name=name, mode="lines+markers",
                             line={"color": theme.CHART_COLORS["circuit"]}), secondary_y=True)
    if current is not None:
        fig.add_trace(go.Scatter(x=[current.n_edges], y=[current.kl], name="this threshold (KL)", mode="markers",
                                 marker={"color": theme.CHART_COLORS["current"], "size": 13, "symbol": "x"}),
                      secondary_y=False)
        fig.add_trace(go.Scatter(x=[current.n_edges], y=[current.metric], name=f"this threshold ({name})",
                                 mode="markers", marker={"color": theme.CHART_COLORS["current"], "size": 13}),
                      secondary_y=True)
    if full is not None and pts:
        xs = [pts[0].n_edges, max(pts[-1].n_edges, full.n_edges)]
        fig.add_trace(go.Scatter(x=xs, y=[full.metric] * 2, name=f"full model ({name})", mode="lines",
                                 line={"color": theme.CHART_COLORS["full"], "dash": "dot"}), secondary_y=True)
    fig.update_xaxes(title_text="edges in circuit", type="log")
    fig.update_yaxes(title_text="KL (nats)", secondary_y=False)
    fig.update_yaxes(title_text=name, secondary_y=True)
    return _layout(fig, "Faithfulness vs circuit size")


def score_histogram(scores: Sequence[float], threshold: float | None = None) -> go.Figure:
    """Distribution of edge scores; the threshold as a vertical line. One trace."""
    fig = go.Figure(go.Histogram(x=list(scores), nbinsx=50, name="edges", marker={"color": theme.CHART_COLORS["circuit"]}))
    if threshold is not None:
        fig.add_vline(x=threshold, line={"color": theme.CHART_COLORS["current"], "dash": "dash"})
    fig.update_xaxes(title_text="edge score")
    fig.update_yaxes(title_text="edges", type="log")
    return _layout(fig, "Edge scores")


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
