from __future__ import annotations

import json
import re

from explorer import graph_view, pyvis_html

from .conftest import make_circuit


def test_render_contains_every_node_and_edge_id(circuit):
    html = pyvis_html.render(graph_view.to_nx(circuit, include="all"), title="t")
    for node in circuit.graph.nodes:
        assert f'"{node}"' in html
    assert html.count('"score":') == circuit.graph.n_edges
    assert "shownEdges.remove" in html  # the threshold is applied in the page, not by a new document
    assert '"label":"MLP 0"' in html and "layer 0.5" not in html


def test_render_escapes_user_text():
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    c = make_circuit(name=evil)
    html = pyvis_html.render(graph_view.to_nx(c), title=evil, legend=[(evil, "#000000")], graph_id=evil,
                             state={"highlight": evil})
    assert "<script>alert" not in html
    assert "<img src=x" not in html
    assert "&lt;script&gt;alert" in html  # shown as text


def test_render_is_self_contained_and_offline(circuit):
    html = pyvis_html.render(graph_view.to_nx(circuit))
    assert "cdn.jsdelivr.net" not in html and "cdnjs" not in html.split("<body>")[0].split("vis-network.min.js")[0]
    assert 'src="lib/' not in html


def test_initial_state_is_embedded_as_json(circuit):
    html = pyvis_html.render(graph_view.to_nx(circuit), state={"threshold": 0.25, "drop": ["a->b"]})
    m = re.search(r"let CE_STATE = (\{.*?\});", html)
    assert m and json.loads(m.group(1))["threshold"] == 0.25


def test_js_json_cannot_close_a_script():
    assert "</" not in pyvis_html.js_json({"x": "</script>"})


def test_compare_render_has_legend_and_group_colours():
    a, b = make_circuit(seed=1), make_circuit(seed=2)
    g = graph_view.compare_nx({"a": a, "b": b})
    html = pyvis_html.render(g, legend=graph_view.group_legend(["a", "b"]))
    assert "only in a" in html and "only in b" in html and "shared" in html
