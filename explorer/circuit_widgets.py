"""Streamlit blocks for circuits: pickers, uploads, the threshold control, the live graph, exports, evaluations.

Torch and networkx load on first use, not on import.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import streamlit as st

import engine

from . import library, resources, state, theme
from .library import slug as library_slug
from .text import literal
from .widgets import selected_model

if TYPE_CHECKING:
    from engine import Circuit

MAX_EDGES_SENT = 3000  # edges shipped to the browser once per circuit (the best by score)
MAX_EDGES_DRAWN = 2000  # edges drawn at most: beyond, a graph is neither readable nor quick to redraw


# Posts a view state to the graph iframe (and remembers it for an iframe that is still loading), and carries a
# node clicked in the graph back to Python as the trigger value `clicked`. The iframe keeps its document, so a
# threshold change costs one small message, not a reload.
_BRIDGE = st.components.v2.component("circuit_explorer_graph_bridge", html="<span></span>", js="""
export default function (component) {
  const data = component.data || {};
  const S = data.slider || null;  // the threshold slider: the graph follows its value before Python reruns
  const fromSlider = v => {
    if (S.mode === "score") return {threshold: v, max_rank: S.cap || null};
    let n = S.mode === "edges" ? Math.round(v) : Math.round((1 - v) * S.total);
    if (S.cap && n > S.cap) n = S.cap;
    return {threshold: null, max_rank: n};
  };
  const send = view => {
    window.__circuitExplorer = window.__circuitExplorer || {};
    window.__circuitExplorer[view.graph] = view;
    window.__ceBridgeAt = Date.now();
    for (const frame of document.querySelectorAll("iframe")) {
      try { frame.contentWindow.postMessage({circuitExplorer: view}, "*"); } catch (err) { /* cross-origin */ }
    }
  };
  let thumb = null;
  if (S) {
    for (const el of document.querySelectorAll('[data-testid="stSlider"]')) {
      const label = el.querySelector("label");
      if (label && label.innerText.trim() === S.label) thumb = el.querySelector('input[type="range"], [role="slider"]');
    }
  }
  const raw = () => Number(thumb.value !== undefined && thumb.value !== "" ? thumb.value : thumb.getAttribute("aria-valuenow"));
  const now = () => (S.stops ? S.stops[Math.max(0, Math.min(S.stops.length - 1, Math.round(raw())))] : raw());
  // Python's view is for the value it ran with; a key pressed since then wins.
  send(thumb && now() !== S.value ? Object.assign({}, data, fromSlider(now())) : data);
  let observer = null;
  if (thumb) {
    observer = new MutationObserver(() => send(Object.assign({}, data, fromSlider(now()))));
    observer.observe(thumb, {attributes: true, attributeFilter: ["value", "aria-valuetext", "aria-valuenow"]});
  }
  const onClick = ev => {
    const c = ev.data && ev.data.ceClick;
    if (c && c.graph === data.graph) component.setTriggerValue("clicked", c.node);
  };
  window.addEventListener("message", onClick);
  return () => { window.removeEventListener("message", onClick); if (observer) observer.disconnect(); };
}
""")



def _select_clicked(bridge_key: str, select_key: str) -> None:
    """A node clicked in the graph becomes the selection (the same widget state as the node selectbox)."""
    node = getattr(st.session_state.get(bridge_key), "clicked", None)
    if node:
        st.session_state[select_key] = node


# ---- circuits ----
def circuit_options() -> dict[str, str]:
    """label -> source key ("lib:<name>", "up:<name>", "new:<name>") for every circuit this session can open."""
    sess = state.session()
    out = {f"{n} (this session, unsaved)": f"new:{n}" for n in sess.unsaved}
    out.update({f"{n} (uploaded)": f"up:{n}" for n in sess.uploaded})
    for e in resources.library().entries():
        out[e.label] = f"lib:{e.name}"
    return out


def open_circuit(source: str) -> Circuit:
    """Raises ValueError/KeyError for a damaged or missing file."""
    kind, name = source.split(":", 1)
    sess = state.session()
    if kind == "new":
        return sess.unsaved[name]
    if kind == "up":
        return sess.uploaded[name]
    return resources.load_entry(name)


def _take_upload(key: str) -> None:
    """on_change of the circuit uploader: runs before the page script, so the picker drawn above the uploader
    already shows the new circuit in this run (read in the script, it would show one run late)."""
    up, sess = st.session_state.get(key), state.session()
    sess.upload_errors.pop(key, None)
    if up is None:
        return
    try:
        c = resources.circuit_from_upload(up.getvalue(), up.name)
    except ValueError as e:
        sess.upload_errors[key] = f"Cannot open {literal(up.name)}: {literal(e)}"
        return
    sess.uploaded[c.meta["name"]] = c
    sess.circuit_name = f"up:{c.meta['name']}"


def circuit_upload(key: str) -> None:
    st.file_uploader("Open a circuit file (.safetensors or edges.json)", type=["safetensors", "json"], key=key,
                     on_change=_take_upload, args=(key,))
    if (message := state.session().upload_errors.get(key)) is not None:
        st.error(message)


def _picked(opts: dict[str, str]) -> None:
    state.session().circuit_name = opts.get(st.session_state.get(state.CIRCUIT_PICK), state.session().circuit_name)


def circuit_picker(label: str = "Circuit") -> Circuit | None:
    """Pick one circuit (default: this session's latest); a damaged file gives a message."""
    opts = circuit_options()
    if not opts:
        st.info("No circuits yet: prune one on the **Prune** page, or open a file below.")
        return None
    sess = state.session()
    if sess.circuit_name not in opts.values():
        mine = [lb for lb in opts if f" · {selected_model()} · " in lb]  # the sidebar model's circuits
        sess.circuit_name = opts[(mine or list(opts))[0]]
    # The session's circuit_name is the one truth (uploads, new runs and Compare set it too): the widget is given
    # its value every run, and a pick goes back through on_change. Steering an unkeyed selectbox by `index`
    # instead made a new widget each time the index moved, which dropped every second pick.
    st.session_state[state.CIRCUIT_PICK] = next(lb for lb, src in opts.items() if src == sess.circuit_name)
    label_pick = st.selectbox(label, list(opts), key=state.CIRCUIT_PICK, on_change=_picked, args=(opts,))
    try:
        return open_circuit(opts[label_pick])
    except (ValueError, KeyError) as e:
        st.error(f"Cannot open this circuit: {literal(e)}")
        return None


def threshold_control(circuit: Circuit) -> tuple[Circuit, dict]:
    """Score / edge-count / sparsity control; returns (selection, the view the graph applies)."""
    from . import graph_view  # noqa: PLC0415 - torch and networkx stay out of the first render

    cid = circuit.circuit_id
    mode = st.radio("Threshold by", ["edge count", "score", "sparsity"], horizontal=True, key=state.THRESHOLD_MODE)
    total = circuit.graph.n_edges
    if mode == "edge count":
        n = st.slider("Edges kept", 0, total, circuit.n_edges, key=f"circuit.edges.{cid}")
        return _follow("Edges kept", "edges", n, total, graph_view.select(circuit, "edges", n))
    if mode == "sparsity":
        # one step = one edge (a fixed 0.0005 moved none on a 606-edge graph)
        label = "Sparsity (share of edges removed)"
        s = st.slider(label, 0.0, 1.0, circuit.sparsity, 1.0 / total,
                      format="%.4f" if total <= 10_000 else "%.6f", key=f"circuit.sparsity.{cid}")
        return _follow(label, "sparsity", s, total, graph_view.select(circuit, "sparsity", s))
    steps = score_steps(circuit)
    if len(steps) < 2:
        st.caption(f"Every edge has the score {steps[0]:.4g}.")
        return graph_view.select(circuit, "score", steps[0])
    start = graph_view.view_threshold(circuit, steps[-1])
    start = max((v for v in steps if v <= start), default=steps[0])
    t = st.select_slider("Score ≥", steps, start, format_func=lambda v: f"{v:.6g}", key=f"circuit.score.{cid}")
    return _follow("Score ≥", "score", t, total, graph_view.select(circuit, "score", t), stops=steps)


def score_steps(circuit: Circuit, most: int = 2000) -> list[float]:
    """The score slider's stops: distinct edge scores, ascending (at most `most`, spread evenly by rank), so that
    one step passes at least one edge's score (a step of (max - min) / 1000 often moved none)."""
    import torch  # noqa: PLC0415 - loaded with the circuit already

    values = torch.unique(circuit.scores[circuit.graph.real_edges].float())
    if len(values) > most:
        values = values[torch.linspace(0, len(values) - 1, most).round().long().unique()]
    return values.tolist()


def _follow(label: str, mode: str, value: float, total: int, picked: tuple[Circuit, dict],
            stops: list[float] | None = None) -> tuple[Circuit, dict]:
    """Tell the bridge which slider drives the view, so the graph follows a key press before Python reruns.
    `stops`: a select slider's values (its thumb reports the index of the stop)."""
    selection, view = picked
    return selection, {**view, "slider": {"label": label, "mode": mode, "value": value, "total": total,
                                          "cap": MAX_EDGES_DRAWN, "stops": stops}}


def live_graph(circuit: Circuit, view: dict, n_shown: int, title: str, select_key: str | None = None) -> str:
    """Draw the graph once per circuit; later calls only post the new view state. Returns the HTML.

    At most MAX_EDGES_DRAWN edges are drawn (the best by score; both threshold kinds select a prefix of that
    ranking); the page then says how many are hidden and why.

    Args:
        view: threshold/max_rank (graph_view.select) plus drop, highlight, focus, pinned, effects, groups.
        n_shown: edges the view selects.
        select_key: session key of the node selectbox that a click in the graph sets.
    """
    cap = min(MAX_EDGES_SENT, circuit.graph.n_edges)
    graph_id = f"g{circuit.circuit_id}-{cap}"
    note = st.container()  # always there, so the message never moves the graph's iframe (which would reload it)
    if n_shown > MAX_EDGES_DRAWN:
        view = {**view, "max_rank": min(view.get("max_rank") or MAX_EDGES_DRAWN, MAX_EDGES_DRAWN)}
        note.warning(f"Drawing the {MAX_EDGES_DRAWN:,} highest-scoring of the {n_shown:,} selected edges: "
                   f"{n_shown - MAX_EDGES_DRAWN:,} are hidden, since a graph with more is neither readable nor quick "
                   "to redraw. Raise the threshold to see them all; the statistics and exports use every selected edge.")
    view = {**view, "graph": graph_id}
    html = resources.graph_html(circuit.circuit_id, cap, title, "", circuit, view)
    st.iframe(html, height=theme.graph_height(circuit.graph.n_layers) + theme.IFRAME_EXTRA_PX,
              alt=f"circuit graph {graph_id}")
    bridge(view, f"bridge.{graph_id}", select_key)
    return html


def bridge(view: dict, key: str, select_key: str | None = None) -> None:
    """Send `view` to the graph `view["graph"]`; a click on a node sets `select_key` (when given)."""
    if select_key is None:
        _BRIDGE(data=view, key=key, height=1)
    else:
        _BRIDGE(data=view, key=key, height=1, on_clicked_change=lambda: _select_clicked(key, select_key))


def downloads(circuit: Circuit, selection: Circuit, view: dict, title: str, stem: str) -> None:
    """Circuit file, edges.json and the standalone graph, exactly as shown; built only when clicked."""
    from . import pyvis_html  # noqa: PLC0415 - networkx stays out of the first render

    stem = library_slug(stem)
    c1, c2, c3 = st.columns(3)
    c1.download_button("Circuit file (.safetensors)", lambda: library.circuit_bytes(selection), f"{stem}.safetensors",
                       mime="application/octet-stream", key="dl.circuit", on_click="ignore")
    c2.download_button("edges.json", lambda: json.dumps(selection.to_edges_json(), indent=1), f"{stem}.edges.json",
                       mime="application/json", key="dl.edges", on_click="ignore")
    c3.download_button("Graph (standalone HTML)", lambda: pyvis_html.standalone(circuit, selection, view, title),
                       f"{stem}.html", mime="text/html", key="dl.html", on_click="ignore")


def show_eval(result: engine.EvalResult) -> None:
    c = st.columns(4)
    c[0].metric("KL to full model (nats)", f"{result.kl:.4f}")
    faith = getattr(result, "faithfulness", None)
    if faith is not None:
        c[0].caption(f"normalised faithfulness {faith:.3f} (1 = the model, 0 = the empty circuit)")
    elif getattr(result, "faithfulness_na", ""):
        c[0].caption("normalised faithfulness: n/a, so the KL is the measure here")
        c[0].text(result.faithfulness_na)   # the reason, shown literally
    if result.metric_name != "accuracy":  # an accuracy metric would repeat the next column
        c[1].metric(f"{result.metric_name} (circuit)", f"{result.metric:.3f}")
        c[1].caption(f"full model: {result.full_metric:.3f}")
    c[2].metric("Accuracy (circuit)", f"{result.accuracy:.1%}")
    c[2].caption(f"full model: {result.full_accuracy:.1%}")
    c[3].metric("Test examples", result.n_examples)


def circuits_picker(label: str = "Circuits to compare") -> dict[str, Circuit]:
    """Pick two or more circuits; default: an instruction vs few-shot pair when one exists."""
    opts = circuit_options()
    labels = list(opts)
    pair = [lb for lb in labels if "boolean" in lb.lower() and ("instruction" in lb.lower() or "fewshot" in lb.lower()
                                                                   or "few-shot" in lb.lower())]
    by_model: dict[str, list[str]] = {}
    for lb in labels:  # the label reads "name · model · task · edges"
        by_model.setdefault(lb.split(" · ")[1] if " · " in lb else "", []).append(lb)
    same = next((v for v in by_model.values() if len(v) >= 2), labels)
    default = pair[:2] if len(pair) >= 2 else same[:2]
    picked = st.multiselect(label, labels, default=default, key=state.COMPARE_PICK)
    out: dict[str, Circuit] = {}
    for lb in picked:
        try:
            c = open_circuit(opts[lb])
        except (ValueError, KeyError) as e:
            st.error(f"Cannot open {literal(lb)}: {literal(e)}")
            continue
        out[c.meta.get("name") or lb] = c
    return out


def save_and_open(circuit: Circuit, name: str) -> None:
    """Save a derived circuit (intersection, union) under a new name and open it in the Circuit page."""
    entry = resources.library().save(circuit, name)
    state.session().circuit_name = f"lib:{entry.name}"
    st.switch_page("app_pages/circuit.py")

