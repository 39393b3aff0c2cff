"""Colours and sizes for graph nodes, q/k/v edges, compare groups and charts (constants only)."""

from __future__ import annotations

# Node kinds -> border colour (boxes are filled with a light tint of it, text stays dark).
NODE_COLORS = {
    "input": "#4c78a8",
    "attn": "#e69f00",
    "mlp": "#009e73",
    "logits": "#cc79a7",
    "kv": "#d55e00",
}
NODE_FILL = {"input": "#dbe6f2", "attn": "#fdf0d5", "mlp": "#d5f0e7", "logits": "#f5e4ee", "kv": "#f8e0d0"}
NODE_SIZE = {"input": 22, "attn": 14, "mlp": 18, "logits": 22, "kv": 10}  # kept for charts and exports
LABEL_PX = 14  # node label size on screen (>= 12 px): labels sit inside their boxes, which edges end at

# Edge colour by what the destination reads (Okabe-Ito palette: told apart with the common colour-vision
# deficiencies): a head's query, key or value input, or anything else (MLP, logits).
EDGE_COLORS = {"q": "#d55e00", "k": "#009e73", "v": "#0072b2", "other": "#7f7f7f"}
EDGE_LABELS = {"q": "query input", "k": "key input", "v": "value input", "other": "MLP / logits input"}
EDGE_WIDTH = (0.8, 5.0)      # min, max width in px; scaled by score
EDGE_OPACITY = (0.35, 0.95)  # min, max opacity; scaled by score
DIM_COLOR = "rgba(200,200,200,0.25)"  # edges not touching the selected node

# Layout: the browser spaces the shown nodes to fill the canvas; these are the bounds (vis-network px).
X_STEP = 110        # Python's fallback positions (exports without JavaScript layout, tests)
Y_STEP = 150
GRAPH_ASPECT = 1.2  # width / height the fallback layout aims at
GRAPH_HEIGHT_PX = 600
ROW_PX = 62          # deep models get a taller canvas: at least this many px per layer row
IFRAME_EXTRA_PX = 70  # title and legend above the canvas

# Compare page (Okabe-Ito): shared edges black, then one colour per circuit for edges unique to it.
SHARED_COLOR = "#000000"
GROUP_COLORS = ["#e69f00", "#56b4e9", "#009e73", "#cc79a7", "#d55e00", "#0072b2", "#f0e442"]
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


def graph_height(n_layers: int) -> int:
    """Canvas height for a model with `n_layers` layers: deep models get room for readable rows."""
    return max(GRAPH_HEIGHT_PX, ROW_PX * (n_layers + 2))

VEGA_LITE_SCHEMA = "https://vega.github.io/schema/vega-lite/v6.json"
"""The Vega-Lite major version Streamlit draws with (1.67: 6.x); a v5 `$schema` made it warn in the console."""
