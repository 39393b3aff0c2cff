"""Colours and sizes for graph nodes, q/k/v edges, compare groups and charts (constants only)."""

from __future__ import annotations

# Node kinds -> fill colour.
NODE_COLORS = {
    "input": "#4c78a8",
    "attn": "#f58518",
    "mlp": "#54a24b",
    "logits": "#b279a2",
    "kv": "#e45756",
}
NODE_SIZE = {"input": 22, "attn": 14, "mlp": 18, "logits": 22, "kv": 10}

# Edge colour by what the destination reads: a head's query/key/value, or anything else (MLP, logits).
EDGE_COLORS = {"q": "#d62728", "k": "#2ca02c", "v": "#1f77b4", "other": "#7f7f7f"}
EDGE_LABELS = {"q": "query input", "k": "key input", "v": "value input", "other": "MLP / logits input"}
EDGE_WIDTH = (0.5, 5.0)      # min, max width in px; scaled by score
EDGE_OPACITY = (0.25, 0.95)  # min, max opacity; scaled by score
DIM_COLOR = "rgba(200,200,200,0.25)"  # edges not touching the highlighted node

# Layout: horizontal spacing between heads, vertical spacing between layers (vis-network px).
X_STEP = 110        # at least; wider for deep models (GRAPH_ASPECT)
Y_STEP = 150
GRAPH_ASPECT = 1.2  # width / height the layout aims at, so the fitted graph fills the frame
GRAPH_HEIGHT_PX = 600
IFRAME_EXTRA_PX = 70  # title and legend above the canvas

# Compare page: shared edges first, then one colour per circuit for edges unique to it.
SHARED_COLOR = "#222222"
GROUP_COLORS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6"]
PARTIAL_COLOR = "#a9a9a9"  # in some but not all circuits (3+ circuits)

# Charts.
CHART_COLORS = {
    "kl": "#d62728",
    "loss": "#9467bd",
    "edge_sparsity": "#1f77b4",
    "edge_target": "#1f77b4",
    "node_sparsity": "#2ca02c",
    "node_target": "#2ca02c",
    "circuit": "#1f77b4",
    "current": "#d62728",
    "full": "#7f7f7f",
}
CHART_HEIGHT = 320
