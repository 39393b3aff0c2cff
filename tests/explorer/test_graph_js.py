"""The graph page's own JavaScript (explorer/graph.js) in headless chromium, on HTML files (no server).

Checks the view logic against Python's: focus = inspector.neighbourhood, compare toggles = overlap.group_counts,
a selected node without edges dims nothing, labels are >= 12 px on screen, the export's slider maximum shows
every edge. Skipped without Debian's chromium or Playwright.
"""

from __future__ import annotations

import shutil

import pytest

from engine import EdgeGraph
from explorer import graph_view, inspector, overlap, pyvis_html

from .conftest import make_circuit

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install chromium)")


@pytest.fixture(scope="module")
def page():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
        pg = browser.new_page(viewport={"width": 1000, "height": 760})
        errors: list[str] = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        yield pg, errors
        browser.close()


def _open(page, tmp_path, html: str, name: str = "g.html"):
    pg, errors = page
    path = tmp_path / name
    path.write_text(html)
    pg.goto(path.as_uri())
    pg.wait_for_function("window.ceVisibleEdges !== undefined")
    assert not errors, errors
    return pg


def test_focus_shows_the_k_hop_neighbourhood(page, tmp_path):
    c = make_circuit(n_layers=3, n_heads=3, keep=25)
    pg = _open(page, tmp_path, pyvis_html.render(graph_view.to_nx(c, include="all"), state={"max_rank": 25}))
    for node, k in (("a1.h0", 1), ("a1.h0", 2), ("m0", 1)):
        pg.evaluate(f"ceApply({{focus: {{node: '{node}', k: {k}}}}})")
        assert set(pg.evaluate("window.ceVisibleNodes")) == inspector.neighbourhood(c, node, k)
    pg.evaluate("ceApply({focus: null})")
    assert pg.evaluate("window.ceVisibleEdges") == 25


def test_a_selected_node_without_edges_dims_nothing(page, tmp_path):
    c = make_circuit(n_layers=3, n_heads=3, keep=10)
    hidden = next(n for n in c.graph.nodes if n not in c.nodes())
    pg = _open(page, tmp_path, pyvis_html.render(graph_view.to_nx(c, include="all"), state={"max_rank": 10}))
    dimmed = "ceNetwork.body.data.edges.get().filter(e => e.color.color === CE_CONFIG.dim).length"
    pg.evaluate(f"ceApply({{highlight: '{hidden}'}})")
    assert pg.evaluate(dimmed) == 0
    assert "has no edge at this threshold" in pg.inner_text("#ce-note")
    shown = c.nodes()[1]
    pg.evaluate(f"ceApply({{highlight: '{shown}'}})")
    touching = sum(1 for e in c.edges() if shown in (e.split("->")[0], e.split("->")[1].split("<")[0]))
    assert pg.evaluate(dimmed) == 10 - touching > 0


def test_compare_toggles_show_each_group(page, tmp_path):
    a, b = make_circuit(seed=1, keep=30, config_hash="h"), make_circuit(seed=2, keep=30, config_hash="h")
    circuits = {"A": a, "B": b}
    counts = overlap.group_counts(circuits)
    pg = _open(page, tmp_path, pyvis_html.render(graph_view.compare_nx(circuits)))
    assert pg.evaluate("window.ceVisibleEdges") == sum(counts.values())
    for groups in (["shared"], ["only:A"], ["only:B"], ["shared", "only:B"]):
        pg.evaluate(f"ceApply({{groups: {groups!r}}})")
        assert pg.evaluate("window.ceVisibleEdges") == sum(counts[g] for g in groups)


def test_labels_are_at_least_12px_on_screen(page, tmp_path):
    for layers, heads in ((2, 12), (4, 4)):
        c = make_circuit(n_layers=layers, n_heads=heads, keep=EdgeGraph(layers, heads).n_edges // 10)
        pg = _open(page, tmp_path, pyvis_html.render(graph_view.to_nx(c, include="all"),
                                                     state={"max_rank": c.n_edges}))
        px = pg.evaluate("Math.min(...window.ceVisibleNodes.map(id => ceNetwork.body.nodes[id].options.font.size))"
                         " * ceNetwork.getScale()")
        assert px >= 12, (layers, heads, px)


def test_export_slider_maximum_shows_every_edge(page, tmp_path):
    c = make_circuit(keep=20)
    drop = graph_view.dropped_edges(c)
    html = pyvis_html.standalone(c, c, {"threshold": None, "max_rank": 20, "drop": drop}, "export")
    pg = _open(page, tmp_path, html)
    assert pg.get_by_label("Edges shown (best scores first)").count() == 1
    pg.evaluate("(() => { const r = document.getElementById('ce-range'); r.value = r.max;"
                " r.dispatchEvent(new Event('input')); })()")
    assert pg.evaluate("window.ceVisibleEdges") == c.graph.n_edges
