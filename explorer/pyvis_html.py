"""networkx circuit graph -> self-contained interactive HTML (vis-network, as shipped with pyvis); pure.

Every node and edge with its score is sent once as JSON; `graph.js` (next to this file) lays out the shown
nodes to fill the canvas, and applies the threshold, hidden (dangling) edges, the selected node, a focus
neighbourhood, compare groups and per-prompt edge effects in the page. Inside the app a tiny bridge posts new
view states to the iframe and carries node clicks back, so moving a threshold never reloads the graph.
"""

from __future__ import annotations

import functools
import html
import importlib.util
import json
from pathlib import Path

import networkx as nx

from engine import Circuit

from . import graph_view, theme

SCRIPT = Path(__file__).with_name("graph.js")
DEFAULT_STATE = {"threshold": None, "max_rank": None, "drop": [], "highlight": None, "focus": None,
                 "groups": None, "pinned": [], "effects": None}


def js_json(obj: object) -> str:
    """JSON that is safe inside a <script> element (no `</script>` breakout, no HTML comments)."""
    text = json.dumps(obj, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


@functools.lru_cache(maxsize=1)
def _vis_assets() -> tuple[str, str]:
    """vis-network's script and stylesheet from the installed pyvis package (read, never imported: pyvis
    imports IPython, ~1 s)."""
    spec = importlib.util.find_spec("pyvis")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("pyvis is not installed (pip install -r requirements.txt): it ships vis-network")
    lib = Path(next(iter(spec.submodule_search_locations))) / "templates" / "lib" / "vis-9.1.2"
    return (lib / "vis-network.min.js").read_text(encoding="utf-8"), (lib / "vis-network.css").read_text(encoding="utf-8")


def graph_data(g: nx.MultiDiGraph) -> dict:
    """The JSON the page draws: nodes (id, label, tooltip, kind, row, order, colours) and edges (id, ends,
    score, rank, q/k/v kind, saved-cut flag, and for compare graphs the group, members and colour)."""
    nodes = [{"id": n, "label": d.get("label", n), "title": d.get("title", n), "kind": d["kind"], "row": d["layer"],
              "order": d.get("order", -1), "x": d["x"], "y": d["y"], "color": theme.NODE_COLORS[d["kind"]],
              "fill": theme.NODE_FILL[d["kind"]]} for n, d in g.nodes(data=True)]
    edges = []
    for u, v, d in g.edges(data=True):
        e = {"id": d["id"], "from": u, "to": v, "score": d["score"], "rank": d.get("rank", 0),
             "kept": d.get("kept", True), "qkv": d["qkv"], "color": d.get("color") or theme.EDGE_COLORS[d["qkv"]]}
        if d.get("members") is not None:
            e.update(group=d["group"], members=d["members"])
        edges.append(e)
    return {"nodes": nodes, "edges": edges}


def _legend_html(legend: list[tuple[str, str]]) -> str:
    items = "".join(f'<span class="ce-key"><i style="background:{html.escape(c)}"></i>{html.escape(label)}</span>'
                    for label, c in legend)
    return f'<div id="ce-legend">{items}<button id="ce-fit" title="Zoom to the shown nodes">Fit</button></div>'


def qkv_legend() -> list[tuple[str, str]]:
    return [(theme.EDGE_LABELS[k], c) for k, c in theme.EDGE_COLORS.items()]


def standalone(circuit: Circuit, selection: Circuit, view: dict, title: str, max_edges: int = 3000) -> str:
    """The export: every edge up to `max_edges` (and all selected), opening on `view`, with its own labelled
    slider whose maximum shows every edge in the file."""
    g = graph_view.to_nx(circuit, include="all", max_edges=max(max_edges, selection.n_edges))
    note = "" if g.number_of_edges() == circuit.graph.n_edges else (
        f" (the best {g.number_of_edges():,} of the model's {circuit.graph.n_edges:,} edges are in this file)")
    return render(g, title=title + note, graph_id="export", state=view,
                  height_px=theme.graph_height(circuit.graph.n_layers))


def render(g: nx.MultiDiGraph, title: str = "", graph_id: str = "graph", state: dict | None = None,
           legend: list[tuple[str, str]] | None = None, height_px: int = theme.GRAPH_HEIGHT_PX) -> str:
    """Self-contained HTML for the graph. Every piece of text is escaped (labels travel as JSON).

    Args:
        g: from graph_view.to_nx / compare_nx.
        title: shown above the graph (escaped; may hold user text such as a prompt or file name).
        graph_id: the id the app's bridge uses to address this graph.
        state: initial view (see DEFAULT_STATE): shown = score >= threshold and rank < max_rank and not in
            drop, and in `groups` (compare graphs) and within `focus` {"node", "k"} hops; `highlight` is the
            selected node; `pinned` nodes are always drawn; `effects` {edge id: value} re-weights edges.
        legend: (label, colour) pairs; default: the q/k/v/other colours.
        height_px: canvas height.

    Returns:
        The HTML document as a string.
    """
    vis_js, vis_css = _vis_assets()
    state = {**DEFAULT_STATE, **(state or {})}
    config = {"graph": graph_id, "labelPx": theme.LABEL_PX, "width": list(theme.EDGE_WIDTH),
              "opacity": list(theme.EDGE_OPACITY), "dim": theme.DIM_COLOR, "edgeColors": theme.EDGE_COLORS}
    header = (f'<div id="ce-title">{html.escape(title)}</div>' if title else "") + _legend_html(
        legend if legend is not None else qkv_legend())
    script = SCRIPT.read_text(encoding="utf-8")
    return ("<!DOCTYPE html><html><head><meta charset=\"utf-8\">"
            f"<style>{vis_css}</style><style>{_STYLE.replace('HEIGHT', str(int(height_px)))}</style>"
            f"<script>{vis_js}</script></head><body>{header}{_CONTROLS}<div id=\"mynetwork\"></div>"
            f"<script>const CE_DATA = {js_json(graph_data(g))};\nconst CE_CONFIG = {js_json(config)};\n"
            f"let CE_STATE = {js_json(state)};\n{script}</script></body></html>")


FONT = '"Source Sans Pro", "Source Sans 3", "Source Sans", "Liberation Sans", "DejaVu Sans", sans-serif'
_STYLE = """body{margin:0;font-family:FONT;font-size:14px;color:#31333f}
#ce-title{font-weight:600;padding:4px 8px}
#ce-legend{padding:2px 8px}
#ce-fit{float:right;font:inherit;font-size:12px;margin-right:4px}
.ce-key{margin-right:14px;white-space:nowrap}
.ce-key i{display:inline-block;width:18px;height:4px;margin:0 5px 3px 0;vertical-align:middle}
#ce-controls{display:none;padding:4px 8px}
#ce-controls label{margin-right:8px}
#ce-note{padding:2px 8px;color:#6b6b6b}
#mynetwork{width:100%;height:HEIGHTpx;border:1px solid #ddd;box-sizing:border-box}
div.vis-tooltip{font-family:inherit !important;font-size:14px !important;white-space:pre-line;color:#31333f;
  background:#fff;border:1px solid #ccc;border-radius:4px;padding:6px 8px;box-shadow:0 2px 6px rgba(0,0,0,.15)}
""".replace("FONT", FONT)

_CONTROLS = """<div id="ce-controls"><label for="ce-range">Edges shown (best scores first):</label>
<input id="ce-range" type="range" min="0" step="1" aria-label="Edges shown (best scores first)">
<span id="ce-count"></span></div><div id="ce-note"></div>"""
