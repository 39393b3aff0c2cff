"""networkx circuit graph -> self-contained interactive HTML (pyvis / vis-network); pure, no file writes.

Every edge and its score is sent once; the threshold, the hidden (dangling) edges and the highlighted node
are applied in the page's own JavaScript with vis-network DataViews. Inside the app a tiny bridge posts
new view states to the iframe, so moving a threshold never reloads the graph.
"""

from __future__ import annotations

import html
import json
import re

import networkx as nx

from engine import Circuit

from . import graph_view, theme

# pyvis's template links Bootstrap from a CDN even with in-line resources; offline that blocks the page.
_CDN_TAGS = re.compile(r"<link[^>]*cdn\.jsdelivr\.net[^>]*/>|<script[^>]*cdn\.jsdelivr\.net[^>]*>\s*</script>", re.S)
_HEADING = re.compile(r"<center>\s*<h1>.*?</h1>\s*</center>", re.S)


def js_json(obj: object) -> str:
    """JSON that is safe inside a <script> element (no `</script>` breakout, no HTML comments)."""
    text = json.dumps(obj, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _rgba(hex_color: str, alpha: float) -> str:
    r, g, b = (int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha:.3f})"


def _edge_style(data: dict, lo: float, hi: float) -> dict:
    """Colour by q/k/v/other (or compare group), width and opacity by score."""
    span = hi - lo
    frac = 1.0 if span <= 0 else min(1.0, max(0.0, (data["score"] - lo) / span))
    color = data.get("color") or theme.EDGE_COLORS[data["qkv"]]
    alpha = theme.EDGE_OPACITY[0] + frac * (theme.EDGE_OPACITY[1] - theme.EDGE_OPACITY[0])
    width = theme.EDGE_WIDTH[0] + frac * (theme.EDGE_WIDTH[1] - theme.EDGE_WIDTH[0])
    if data.get("members"):  # compare graphs: colour says who holds the edge; all edges stay clearly visible
        alpha, width = theme.EDGE_OPACITY[1], 1.5 + 2.5 * frac
    roundness = {"q": 0.05, "k": 0.15, "v": 0.25}.get(data["qkv"], 0.0)
    if data.get("members"):
        title = f"{data['id']}\nin: " + ", ".join(data["members"])
    else:
        title = f"{data['id']}\nscore {data['score']:.4g}" + ("" if data.get("kept", True) else "\n(not in the saved cut)")
    return {"color": {"color": _rgba(color, alpha), "highlight": _rgba(color, 1.0), "hover": _rgba(color, 1.0)},
            "width": round(width, 2), "title": title, "smooth": {"type": "curvedCW", "roundness": roundness},
            "arrows": {"to": {"enabled": True, "scaleFactor": 0.4}}}


def build_network(g: nx.MultiDiGraph, height_px: int = theme.GRAPH_HEIGHT_PX):  # noqa: ANN201 - pyvis Network
    """A pyvis Network with fixed layered positions, physics off; edges carry `score`, `rank` and `kept`."""
    from pyvis.network import Network  # noqa: PLC0415 - pyvis imports IPython (~1 s); pages without graphs skip it

    net = Network(height=f"{height_px}px", width="100%", directed=True, cdn_resources="in_line")
    for n, d in g.nodes(data=True):
        kind = d["kind"]
        net.add_node(n, label=n, title=f"{n}\n{kind}, layer {d['layer']:g}", x=d["x"], y=d["y"],
                     color=theme.NODE_COLORS[kind], size=theme.NODE_SIZE[kind], physics=False, shape="dot")
    scores = [d["score"] for _, _, d in g.edges(data=True)]
    lo, hi = (min(scores), max(scores)) if scores else (0.0, 1.0)
    for u, v, d in g.edges(data=True):
        net.add_edge(u, v, id=d["id"], score=d["score"], rank=d.get("rank", 0), kept=d.get("kept", True),
                     **_edge_style(d, lo, hi))
    net.toggle_physics(False)
    net.set_options(json.dumps({
        "physics": {"enabled": False},
        "interaction": {"hover": True, "tooltipDelay": 80, "navigationButtons": False, "multiselect": True},
        "edges": {"selectionWidth": 2},
        # labels sit under their node, where edges from lower layers arrive: a backing keeps them legible
        "nodes": {"font": {"size": 13, "background": "rgba(255,255,255,0.85)"}},
    }))
    return net


def _legend_html(legend: list[tuple[str, str]]) -> str:
    items = "".join(f'<span class="ce-key"><i style="background:{html.escape(c)}"></i>{html.escape(label)}</span>'
                    for label, c in legend)
    return f'<div id="ce-legend">{items}</div>'


def standalone(circuit: Circuit, selection: Circuit, view: dict, title: str, max_edges: int = 3000) -> str:
    """The export: every edge up to `max_edges` (and all selected), opening on `view`, with its own slider."""
    g = graph_view.to_nx(circuit, include="all", max_edges=max(max_edges, selection.n_edges))
    return render(g, title=title, graph_id="export", state=view)


def qkv_legend() -> list[tuple[str, str]]:
    return [(theme.EDGE_LABELS[k], c) for k, c in theme.EDGE_COLORS.items()]


def render(g: nx.MultiDiGraph, title: str = "", graph_id: str = "graph", state: dict | None = None,
           legend: list[tuple[str, str]] | None = None, height_px: int = theme.GRAPH_HEIGHT_PX) -> str:
    """Self-contained HTML for the graph. Every piece of text is escaped (labels travel as JSON).

    Args:
        g: from graph_view.to_nx / compare_nx.
        title: shown above the graph (escaped; may hold user text such as a prompt or file name).
        graph_id: the id the app's bridge uses to address this graph.
        state: initial view {"threshold": float | None, "max_rank": int | None, "drop": [edge ids],
            "highlight": node | None}: shown = score >= threshold and rank < max_rank and not dropped.
        legend: (label, colour) pairs; default: the q/k/v/other colours.
        height_px: canvas height.

    Returns:
        The HTML document as a string.
    """
    state = {"threshold": None, "max_rank": None, "drop": [], "highlight": None, **(state or {})}
    page = build_network(g, height_px).generate_html(notebook=False)
    page = _CDN_TAGS.sub("", page)
    page = _HEADING.sub("", page)
    header = (f'<div id="ce-title">{html.escape(title)}</div>' if title else "") + _legend_html(
        legend if legend is not None else qkv_legend())
    page = page.replace("<body>", "<body>" + _STYLE + header + _CONTROLS, 1)
    script = _SCRIPT.replace("__GRAPH_ID__", js_json(graph_id)).replace("__STATE__", js_json(state))
    return page.replace("</body>", f"<script>{script}</script></body>", 1)


_STYLE = """<style>
body{margin:0;font-family:sans-serif;font-size:13px}
#ce-title{font-weight:600;padding:4px 8px}
#ce-legend{padding:2px 8px}
.ce-key{margin-right:14px;white-space:nowrap}
.ce-key i{display:inline-block;width:18px;height:4px;margin:0 5px 3px 0;vertical-align:middle}
#ce-controls{display:none;padding:4px 8px}
#mynetwork{border:1px solid #ddd !important}
.card{border:none !important}
</style>"""

_CONTROLS = """<div id="ce-controls">edges shown: <input id="ce-range" type="range" min="0" step="1">
<span id="ce-count"></span></div>"""

# Runs after pyvis's own script, which defines the globals `nodes`, `edges` (vis.DataSet) and `network`.
# The network is re-pointed at two small DataSets that receive only what changes between views,
# so a one-edge threshold step is one add or remove, not a rebuild.
_SCRIPT = r"""
(function () {
  const GRAPH_ID = __GRAPH_ID__;
  const DIM = {color: "rgba(200,200,200,0.2)"};
  const ALL = edges.get();
  const EDGE = new Map(ALL.map(e => [e.id, e]));
  const NODE = new Map(nodes.get().map(n => [n.id, n]));
  const PINNED = ["input", "tok", "pos", "logits"].filter(id => NODE.has(id));
  const shownEdges = new vis.DataSet(), shownNodes = new vis.DataSet();
  let state = __STATE__, visible = new Set(), visibleNodes = new Set(), lastHighlight = null, first = true;
  const styled = (e, h) => (h === null || e.from === h || e.to === h) ? e : Object.assign({}, e, {color: DIM});
  function apply(next) {
    if (!next || (next.graph !== undefined && next.graph !== GRAPH_ID)) return;
    state = Object.assign({}, state, next);
    const t = state.threshold, r = state.max_rank, h = state.highlight || null, drop = new Set(state.drop || []);
    const want = new Set(), used = new Set(PINNED);
    for (const e of ALL) {
      if ((t === null || e.score >= t) && (r === null || r === undefined || e.rank < r) && !drop.has(e.id)) {
        want.add(e.id); used.add(e.from); used.add(e.to);
      }
    }
    shownEdges.remove([...visible].filter(id => !want.has(id)));
    shownNodes.remove([...visibleNodes].filter(id => !used.has(id)));
    shownNodes.add([...used].filter(id => !visibleNodes.has(id) && NODE.has(id)).map(id => NODE.get(id)));
    shownEdges.add([...want].filter(id => !visible.has(id)).map(id => styled(EDGE.get(id), h)));
    if (h !== lastHighlight) {
      shownEdges.update([...want].filter(id => visible.has(id)).map(id => styled(EDGE.get(id), h)));
      lastHighlight = h;
    }
    visible = want;
    visibleNodes = new Set([...used].filter(id => NODE.has(id)));
    if (first) { network.fit(); first = false; }
    window.ceVisibleEdges = visible.size;
    window.ceAppliedAt = Date.now();
    document.body.dataset.visibleEdges = String(visible.size);
    const count = document.getElementById("ce-count");
    if (count) count.textContent = visible.size + " edges";
  }
  network.setData({nodes: shownNodes, edges: shownEdges});
  window.addEventListener("message", ev => { if (ev.data && ev.data.circuitExplorer) apply(ev.data.circuitExplorer); });
  let fromParent = null;
  try { fromParent = window.parent !== window && window.parent.__circuitExplorer
        ? window.parent.__circuitExplorer[GRAPH_ID] : null; } catch (err) { fromParent = null; }
  apply(Object.assign({graph: GRAPH_ID}, fromParent || {}));
  if (window.parent === window) {  // standalone export: its own edge-count slider
    const range = document.getElementById("ce-range");
    document.getElementById("ce-controls").style.display = "block";
    range.max = String(ALL.length);
    range.value = String(visible.size);
    range.addEventListener("input", () => apply({threshold: null, max_rank: Number(range.value)}));
  }
  window.ceApply = apply;
  window.ceLoadedAt = Date.now();
})();
"""
