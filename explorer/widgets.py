"""Reusable Streamlit blocks: model/task/circuit pickers, the prune form, the live graph, progress, exports.

Torch, plotly and networkx load on first use, not on import: app.py imports this module on every page,
and the Prune page draws its title and form before the model (and torch) have loaded.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from typing import TYPE_CHECKING

import streamlit as st

import engine

from . import jobs, library, resources, state, theme
from .library import slug as library_slug

if TYPE_CHECKING:
    from streamlit.delta_generator import DeltaGenerator

    from engine import Circuit, MaskedTransformer, PruneConfig, Task

OTHER_MODEL = "Other: hub id or local folder…"
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


# ---- models and tasks ----
def sidebar_model_picker() -> str:
    """Sidebar model choice shared by every page: embedded models first, or any hub id / local folder."""
    st.session_state[state.FRAME] = True
    choices = list(resources.model_choices())
    options = choices + [OTHER_MODEL]
    pick = st.sidebar.selectbox("Model", options, key=state.MODEL, help="Embedded models work offline.")
    if pick == OTHER_MODEL:
        custom = st.sidebar.text_input("Hub id or local folder", key=state.MODEL_CUSTOM, placeholder="gpt2")
        pick = custom.strip() or (choices[0] if choices else "")
    st.sidebar.caption(f"Circuit library: `{resources.library().folder}`")
    return pick


def require_frame() -> None:
    """Run pages through app.py. Until app.py has run once in a fresh server, Streamlit would treat a `pages/` folder
    as a legacy multipage folder and a deep link runs the page alone (no sidebar, no router)."""
    if not st.session_state.get(state.FRAME):
        st.switch_page("app.py")


def selected_model() -> str:
    value = state.get(state.MODEL)
    if value == OTHER_MODEL:
        value = str(state.get(state.MODEL_CUSTOM, "") or "").strip()
    return str(value or next(iter(resources.model_choices()), ""))


def require_model(name: str) -> MaskedTransformer:
    """The cached model, or a clear message and a stopped page."""
    if not name:
        st.error("No model available: no embedded models were found. Pick *Other* and give a hub id or folder.")
        st.stop()
    try:
        return resources.get_model(name)
    except Exception as e:  # any loader failure is the user's to fix, not a traceback
        st.error(f"Could not load model **{name}**: {e}\n\nOffline? Use an embedded model or a local folder.")
        st.stop()


def task_picker(model_name: str, key: str) -> Task | None:
    """A built-in task or an uploaded JSONL file; problems listed with their line numbers.
    A Tracr program offers only its own inputs. The choice survives page switches."""
    names = resources.task_names(model_name)
    program = resources.tracr_program(model_name)
    source = "Built-in"
    if program is None:
        source = st.radio("Task", ["Built-in", "Upload JSONL"], horizontal=True,
                          key=state.kept(f"{key}.source", "Built-in"))
        state.remember(f"{key}.source", source)
    try:
        if source == "Built-in":
            task_key = state.kept(f"{key}.task.{model_name}", resources.default_task(model_name), names)
            name = st.selectbox("Task" if program else "Built-in task", names, key=task_key,
                                disabled=len(names) == 1)
            state.remember(task_key, name)
            task = resources.get_task(model_name, name)
            st.caption(engine.TASKS[name].description if name in engine.TASKS else task.description)
            return task
        up = st.file_uploader("JSONL: one {\"clean\": \"…<predict>answer</predict>\", \"corrupted\": …} per line",
                              type=["jsonl", "json", "txt"], key=f"{key}.upload")
        sess = state.session()
        if up is not None:
            sess.data_upload = (up.name, up.getvalue())
        elif sess.data_upload is not None:
            note, forget = st.columns([5, 1], vertical_alignment="center")
            note.caption(f"Using **{sess.data_upload[0]}**, uploaded earlier in this session; upload another "
                         "file to replace it.")
            if forget.button("Forget it", key=f"{key}.forget_upload"):
                sess.data_upload = None
                st.rerun()
        if sess.data_upload is None:
            return None
        name, data = sess.data_upload
        return resources.jsonl_task(model_name, data, name)
    except engine.DataError as e:
        lines = "\n".join(f"- line {n}: {reason}" for n, reason in e.problems[:30])
        st.error(f"The data has {len(e.problems)} problem(s):\n{lines}")
    except (KeyError, ValueError) as e:
        st.error(f"Cannot build this task for {model_name}: {e}")
    return None


def _kept_input(draw, label: str, key: str, default: object, **kwargs: object) -> object:  # noqa: ANN001 - st.* widget
    """Draw `draw(label, key=key, **kwargs)` with the value it had before a page switch (else `default`)."""
    value = draw(label, key=state.kept(key, default, kwargs.get("options")), **kwargs)
    state.remember(key, value)
    return value


def prune_form(model_name: str, key: str = "prune") -> PruneConfig | None:
    """Hyper-parameters with working defaults (a Tracr program's own), remembered per model across page switches.
    Needs no torch for the shipped language models, so it draws before the model loads.

    Returns:
        The config, or None after showing why the settings are impossible.
    """
    d = resources.prune_defaults(model_name)
    k = f"{key}.{model_name}"
    c1, c2, c3 = st.columns(3)
    steps = _kept_input(c1.number_input, "Steps", f"{k}.steps", d.n_steps, min_value=1, max_value=100_000)
    sparsity = _kept_input(c2.number_input, "Target edge sparsity", f"{k}.sparsity", d.edge_sparsity, min_value=0.0,
                           max_value=1.2, step=0.01,
                           help="Share of edges removed; above 1 pushes as sparse as possible.")
    batch = _kept_input(c3.number_input, "Batch size", f"{k}.batch", d.batch_size, min_value=1, max_value=1024)
    with st.expander("Advanced"):
        a1, a2, a3 = st.columns(3)
        use_nodes = _kept_input(a1.checkbox, "Node gates", f"{k}.use_nodes", d.node_sparsity is not None)
        node_sparsity = _kept_input(a1.number_input, "Target node sparsity", f"{k}.node_sparsity",
                                    d.node_sparsity or 0.72, min_value=0.0, max_value=1.2, step=0.01)
        ablations = ["interchange", "mean", "zero"]
        ablation = _kept_input(a1.selectbox, "Ablation", f"{k}.ablation", d.ablation, options=ablations)
        warmup = _kept_input(a2.number_input, "Warm-up steps (0 = 80% of steps)", f"{k}.warmup", d.warmup_steps or 0,
                             min_value=0, max_value=100_000)
        lr_gates = _kept_input(a2.number_input, "LR gates", f"{k}.lr_gates", d.lr_gates, min_value=0.0,
                               max_value=100.0, step=0.01, format="%.4g")
        lr_lambdas = _kept_input(a3.number_input, "LR Lagrange multipliers", f"{k}.lr_lambdas", d.lr_lambdas,
                                 min_value=0.0, max_value=100.0, step=0.01, format="%.4g")
        seed = _kept_input(a3.number_input, "Seed", f"{k}.seed", d.seed, min_value=0, max_value=2**31 - 1)
    try:
        cfg = replace(d, n_steps=int(steps), batch_size=int(batch), edge_sparsity=float(sparsity),
                      node_sparsity=float(node_sparsity) if use_nodes else None, warmup_steps=int(warmup) or None,
                      lr_gates=float(lr_gates), lr_lambdas=float(lr_lambdas), seed=int(seed), ablation=ablation)
    except ValueError as e:
        st.error(f"Impossible settings: {e}")
        return None
    return cfg


def memory_estimate(slot: DeltaGenerator, model: MaskedTransformer, task: Task, cfg: PruneConfig) -> None:
    """The engine's peak-memory estimate of one step of this run, next to what the device has free (in `slot`)."""
    from . import memory_note  # noqa: PLC0415 - imports torch, which the first render does without

    try:
        text, fits = memory_note.note(model, task, cfg)
    except ValueError as e:
        slot.caption(f"No memory estimate: {e}")
        return
    if fits:
        slot.caption(text)
    else:
        slot.warning(text + ". **This may not fit:** lower the batch size.")


# ---- background pruning ----
def start_prune(model: MaskedTransformer, task: Task, cfg: PruneConfig, model_name: str) -> jobs.PruneJob:
    return jobs.prune_job(model, task, cfg, model_name, resources.library())


@st.fragment(run_every=0.7)
def prune_progress() -> None:
    """Live progress of the session's run; reruns the whole page once the run ends."""
    job = state.session().job
    if job is None:
        return
    if not job.running:
        st.rerun()
    step = len(job.steps)
    st.progress(min(1.0, job.progress), text=f"Step {step} / {job.n_steps} · ETA {jobs.format_eta(job.eta_s)}")
    if st.button("Cancel", key="prune.cancel", disabled=job.cancelled):
        job.cancel()
        st.toast("Stopping after the current step…")
    if job.steps:
        prune_chart(list(job.steps), job.loss, key="prune.live")


def prune_chart(steps: list, loss: str = "kl", key: str | None = None) -> None:
    """Loss and sparsity curves of a run (the charts module loads here, after the first page)."""
    from . import charts  # noqa: PLC0415 - torch stays out of the first render

    st.plotly_chart(charts.prune_curves(steps, loss), key=key, config=charts.plotly_config())


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


def circuit_upload(key: str) -> None:
    up = st.file_uploader("Open a circuit file (.safetensors or edges.json)", type=["safetensors", "json"], key=key)
    if up is not None:
        try:
            c = resources.circuit_from_upload(up.getvalue(), up.name)
            state.session().uploaded[c.meta["name"]] = c
            state.session().circuit_name = f"up:{c.meta['name']}"
        except ValueError as e:
            st.error(f"Cannot open {up.name}: {e}")


def circuit_picker(label: str = "Circuit") -> Circuit | None:
    """Pick one circuit (default: this session's latest); a damaged file gives a message."""
    opts = circuit_options()
    if not opts:
        st.info("No circuits yet: prune one on the **Prune** page, or open a file below.")
        return None
    sources = list(opts.values())
    sess = state.session()
    mine = [i for i, lb in enumerate(opts) if f" · {selected_model()} · " in lb]  # the sidebar model's circuits
    index = sources.index(sess.circuit_name) if sess.circuit_name in sources else (mine or [0])[0]
    label_pick = st.selectbox(label, list(opts), index=index)
    sess.circuit_name = opts[label_pick]
    try:
        return open_circuit(opts[label_pick])
    except (ValueError, KeyError) as e:
        st.error(f"Cannot open this circuit: {e}")
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
        s = st.slider("Sparsity (share of edges removed)", 0.0, 1.0, round(circuit.sparsity, 4), 0.0005,
                      format="%.4f", key=f"circuit.sparsity.{cid}")
        return graph_view.select(circuit, "sparsity", s)
    real = circuit.scores[circuit.graph.real_edges]
    lo, hi = float(real.min()), float(real.max())
    start = min(max(graph_view.view_threshold(circuit, hi), lo), hi)
    if hi <= lo:
        st.caption(f"Every edge has the score {lo:.4g}.")
        return graph_view.select(circuit, "score", lo)
    t = st.slider("Score ≥", lo, hi, start, (hi - lo) / 1000, format="%.4f", key=f"circuit.score.{cid}")
    return graph_view.select(circuit, "score", t)


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
            st.error(f"Cannot open {lb}: {e}")
            continue
        out[c.meta.get("name") or lb] = c
    return out


def save_and_open(circuit: Circuit, name: str) -> None:
    """Save a derived circuit (intersection, union) under a new name and open it in the Circuit page."""
    entry = resources.library().save(circuit, name)
    state.session().circuit_name = f"lib:{entry.name}"
    st.switch_page("app_pages/circuit.py")


def await_result(status: tuple[str, object], waiting: str) -> object | None:
    """Unpack an Evaluator answer: the result, or None after showing progress or the error."""
    kind, value = status
    if kind == "done":
        return value
    if kind == "error":
        st.warning(f"Evaluation failed: {value}")
    elif waiting:
        st.caption(f":material/hourglass_top: {waiting}")
    return None
