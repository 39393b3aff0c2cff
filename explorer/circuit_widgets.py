"""Streamlit blocks for circuits: pickers, uploads, the threshold control, the live graph, exports, evaluations.

Torch and networkx load on first use, not on import.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING

import streamlit as st

import engine

from . import library, resources, state, theme
from .library import slug as library_slug
from .text import literal
from .widgets import selected_model

if TYPE_CHECKING:
    from engine import Circuit

MAX_EDGES_SENT = 3000  # edges shipped to the browser at once; more only when a threshold needs them


# Posts a view state to the graph iframe (and remembers it for an iframe that is still loading).
# The iframe keeps its document, so a threshold change costs one small message, not a reload.
_BRIDGE = st.components.v2.component("circuit_explorer_graph_bridge", html="<span></span>", js="""
export default function (component) {
  const data = component.data || {};
  window.__circuitExplorer = window.__circuitExplorer || {};
  window.__circuitExplorer[data.graph] = data;
  window.__ceBridgeAt = Date.now();
  for (const frame of document.querySelectorAll("iframe")) {
    try { frame.contentWindow.postMessage({circuitExplorer: data}, "*"); } catch (err) { /* cross-origin */ }
  }
}
""")



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
        return graph_view.select(circuit, "edges", n)
    if mode == "sparsity":
        # one step = one edge (a fixed 0.0005 moved none on a 606-edge graph)
        s = st.slider("Sparsity (share of edges removed)", 0.0, 1.0, circuit.sparsity, 1.0 / total,
                      format="%.4f" if total <= 10_000 else "%.6f", key=f"circuit.sparsity.{cid}")
        return graph_view.select(circuit, "sparsity", s)
    steps = score_steps(circuit)
    if len(steps) < 2:
        st.caption(f"Every edge has the score {steps[0]:.4g}.")
        return graph_view.select(circuit, "score", steps[0])
    start = graph_view.view_threshold(circuit, steps[-1])
    start = max((v for v in steps if v <= start), default=steps[0])
    t = st.select_slider("Score ≥", steps, start, format_func=lambda v: f"{v:.6g}", key=f"circuit.score.{cid}")
    return graph_view.select(circuit, "score", t)


def score_steps(circuit: Circuit, most: int = 2000) -> list[float]:
    """The score slider's stops: distinct edge scores, ascending (at most `most`, spread evenly by rank), so that
    one step passes at least one edge's score (a step of (max - min) / 1000 often moved none)."""
    import torch  # noqa: PLC0415 - loaded with the circuit already

    values = torch.unique(circuit.scores[circuit.graph.real_edges].float())
    if len(values) > most:
        values = values[torch.linspace(0, len(values) - 1, most).round().long().unique()]
    return values.tolist()


def live_graph(circuit: Circuit, view: dict, n_shown: int, drop: list[str], highlight: str | None,
               title: str) -> str:
    """Draw the graph once per circuit; later calls only post the new view state. Returns the HTML."""
    cap = MAX_EDGES_SENT if n_shown <= MAX_EDGES_SENT else int(math.ceil(n_shown / 1000) * 1000)
    cap = min(cap, circuit.graph.n_edges)
    graph_id = f"g{circuit.circuit_id}-{cap}"
    view = {"graph": graph_id, **view, "drop": drop, "highlight": highlight}
    html = resources.graph_html(circuit.circuit_id, cap, title, "", circuit, view)
    st.iframe(html, height=theme.GRAPH_HEIGHT_PX + theme.IFRAME_EXTRA_PX, alt=f"circuit graph {graph_id}")
    _BRIDGE(data=view, key=f"bridge.{graph_id}", height=1)
    return html


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

