from __future__ import annotations

import json
from dataclasses import dataclass

import plotly.graph_objects as go

from explorer import charts


@dataclass
class Step:
    step: int
    kl: float
    edge_sparsity: float
    edge_target: float
    node_sparsity: float | None = None
    node_target: float | None = None
    elapsed_s: float = 0.0


@dataclass
class Point:
    n_edges: int
    kl: float
    metric: float
    metric_name: str = "logit_diff"


def test_prune_curves_traces():
    steps = [Step(i, 1.0 / (i + 1), i / 10, i / 9) for i in range(10)]
    fig = charts.prune_curves(steps)
    assert isinstance(fig, go.Figure) and len(fig.data) == 3
    with_nodes = [Step(i, 0.1, 0.5, 0.5, 0.2, 0.3) for i in range(3)]
    assert len(charts.prune_curves(with_nodes).data) == 5


def test_faithfulness_spec_marks_the_current_point():
    pts = [Point(n, 1.0 / n, 2.0) for n in (1, 10, 100)]
    spec = charts.faithfulness_spec(pts)
    assert [len(p["layer"]) for p in spec["hconcat"]] == [1, 1]
    spec = charts.faithfulness_spec(pts, Point(10, 0.1, 2.0), 3.0)
    assert [len(p["layer"]) for p in spec["hconcat"]] == [2, 3]
    assert spec["hconcat"][0]["layer"][1]["data"]["values"][0]["edges"] == 10
    json.dumps(spec)  # serialisable as is


def test_other_charts():
    hist = charts.histogram_spec([0.1, 0.5, 0.9, 0.9], 0.5)
    assert sum(r["edges"] for r in hist["layer"][0]["data"]["values"]) == 4 and len(hist["layer"]) == 2
    hc = charts.hard_concrete(0.0, n=2000)
    assert len(hc.data) == 3 and 0 < hc.data[1].y[0] < 1
    assert len(charts.sparsity_schedule(100, 80, 0.95).data) == 1
    assert len(charts.sparsity_schedule(100, 80, 0.95, [Step(1, 0.1, 0.1, 0.1)]).data) == 2
    assert len(charts.prediction_bars(["a", "b"], [0.6, 0.4], "t").data) == 1
    assert charts.plotly_config("svg")["toImageButtonOptions"]["format"] == "svg"


def test_every_vega_lite_spec_declares_the_version_streamlit_draws():
    """A v5 `$schema` makes Streamlit's Vega-Lite 6 warn in the browser console (the live prune curves and
    Compare's overlap-by-layer bars did)."""
    from explorer import overlap, theme

    steps = [{"step": i, "kl": 0.1, "edge_sparsity": 0.1 * i, "edge_target": 0.1 * i} for i in range(3)]
    specs = [charts.prune_curves_spec(steps, "kl"), charts.histogram_spec([0.1, 0.5, 0.9], 0.5),
             overlap.layer_chart_spec([{"layer": "layer 0", "group": "shared", "edges": 3}],
                                      {"shared": ("shared", "#000000")})]
    assert [s["$schema"] for s in specs] == [theme.VEGA_LITE_SCHEMA] * 3
    assert theme.VEGA_LITE_SCHEMA.endswith("/v6.json")
