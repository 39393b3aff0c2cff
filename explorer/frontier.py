"""The sparsity-faithfulness frontier a budget search explored, as a plotly figure (pure; engine/budget.py)."""

from __future__ import annotations

import plotly.graph_objects as go

from . import theme


def frontier_figure(record: dict, metric_name: str = "metric") -> go.Figure:
    """Every circuit the search evaluated (validation): edges kept against the budgeted quantity; the
    returned circuit starred, the budget as a dashed line. `record` is `engine.budget.frontier_of(circuit)`."""
    budget, points = record["budget"], record["frontier"]
    is_kl = budget["kind"] == "kl"
    what = "KL to the model (nats)" if is_kl else \
        f"share of the model's {metric_name if budget['kind'] == 'metric' else 'accuracy'}"
    fig = go.Figure()
    for passed, name, color in ((True, "meets the budget", "#2ca02c"), (False, "misses it", "#d62728")):
        pts = [p for p in points if p["passed"] == passed]
        fig.add_trace(go.Scatter(
            x=[p["n_edges"] for p in pts], y=[p["value"] for p in pts], mode="markers", name=name,
            marker={"color": color, "size": 8}, text=[p["source"] for p in pts],
            hovertemplate="%{x} edges: %{y:.3f} (%{text})<extra></extra>"))
    if 0 <= record["chosen"] < len(points):
        c = points[record["chosen"]]
        fig.add_trace(go.Scatter(x=[c["n_edges"]], y=[c["value"]], mode="markers", name="returned circuit",
                                 marker={"symbol": "star", "size": 18, "color": theme.CHART_COLORS["current"]},
                                 hovertemplate="returned: %{x} edges, %{y:.3f}<extra></extra>"))
    fig.add_hline(y=budget["value"], line_dash="dash", line_color=theme.CHART_COLORS["full"],
                  annotation_text=("KL budget" if is_kl else f"budget {budget['value']:.0%}"))
    fig.update_xaxes(title_text="edges kept", type="log")
    fig.update_yaxes(title_text=what)
    fig.update_layout(title="What the budget search explored (validation split)", height=theme.CHART_HEIGHT,
                      margin={"l": 40, "r": 20, "t": 50, "b": 40},
                      legend={"orientation": "h", "yanchor": "top", "y": -0.25})
    return fig
