"""Streamlit blocks of the Prune page: the hyper-parameter form and the memory estimate (runs: run_widgets.py).

Torch and plotly load on first use: the Prune page draws its title and form before the model (and torch) have loaded.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import streamlit as st

from engine.budget_spec import DEFAULT_BUDGET, DEFAULT_SEARCH, Budget

from . import resources, state
from .text import literal

if TYPE_CHECKING:
    from streamlit.delta_generator import DeltaGenerator

    from engine import MaskedTransformer, PruneConfig, Task


def _kept_input(draw, label: str, key: str, default: object, **kwargs: object) -> object:  # noqa: ANN001 - st.* widget
    """Draw `draw(label, key=key, **kwargs)` with the value it had before a page switch (else `default`)."""
    value = draw(label, key=state.kept(key, default, kwargs.get("options")), **kwargs)
    state.remember(key, value)
    return value


GRAPHS = {"input": "one input node", "split": "token + position nodes"}


def chosen_graph(model_name: str, key: str = "prune") -> str:
    """The graph picked in prune_form for this model: "input" or "split"."""
    return st.session_state.get(state.KEPT, {}).get(f"{key}.{model_name}.graph", "input")


def prune_form(model_name: str, key: str = "prune") -> PruneConfig | None:
    """Hyper-parameters with working defaults (a Tracr program's own), remembered per model across page switches.
    Needs no torch for the shipped language models, so it draws before the model loads.

    Returns:
        The config, or None after showing why the settings are impossible.
    """
    d = resources.prune_defaults(model_name)
    k = f"{key}.{model_name}"
    if is_budget_default(model_name):  # the budget search's first run is short (engine.budget_spec.DEFAULT_SEARCH)
        d = replace(d, n_steps=DEFAULT_SEARCH.prune.n_steps)
    c1, c2, c3 = st.columns(3)
    steps = _kept_input(c1.number_input, "Steps", f"{k}.steps", d.n_steps, min_value=1, max_value=100_000)
    sparsity = _kept_input(c2.number_input, "Target edge sparsity", f"{k}.sparsity", d.edge_sparsity, min_value=0.0,
                           max_value=1.2, step=0.01,
                           help="Share of edges removed; above 1 pushes as sparse as possible. With a "
                                "faithfulness budget: the first run's target.")
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
        _kept_input(a3.selectbox, "Graph", f"{k}.graph", "input", options=list(GRAPHS), format_func=GRAPHS.get,
                    help="Which writers the embeddings are: one `input` node (ACDC's and the EAP-IG library's "
                         "graph) or separate `tok` and `pos` nodes (the Edge Pruning authors' graph).")
    try:
        cfg = replace(d, n_steps=int(steps), batch_size=int(batch), edge_sparsity=float(sparsity),
                      node_sparsity=float(node_sparsity) if use_nodes else None, warmup_steps=int(warmup) or None,
                      lr_gates=float(lr_gates), lr_lambdas=float(lr_lambdas), seed=int(seed), ablation=ablation)
    except ValueError as e:
        st.error(f"Impossible settings: {literal(e)}")
        return None
    return cfg


def memory_estimate(slot: DeltaGenerator, model: MaskedTransformer, task: Task, cfg: PruneConfig) -> None:
    """The engine's peak-memory estimate of one step of this run, next to what the device has free (in `slot`)."""
    from . import memory_note  # noqa: PLC0415 - imports torch, which the first render does without

    try:
        text, fits = memory_note.note(model, task, cfg)
    except ValueError as e:
        slot.caption(f"No memory estimate: {literal(e)}")
        return
    if fits:
        slot.caption(text)
    else:
        slot.warning(text + ". **This may not fit:** lower the batch size.")


def is_budget_default(model_name: str) -> bool:
    """The faithfulness budget is the default for the embedded models (their sweep is in assets/MODELS.md)."""
    import engine  # noqa: PLC0415 - engine.assets is torch-free

    return model_name in engine.embedded_models()


BUDGET_KINDS = {"share of the task metric kept": "metric", "share of the accuracy kept": "accuracy",
                "KL to the model, at most (nats)": "kl"}


def budget_choice(model_name: str, key: str = "prune") -> Budget | None:
    """'Ask for faithfulness': the sparsest circuit found that keeps a share of the model's task metric (or
    accuracy, or a KL at most) on the validation split (engine/budget.py), instead of a fixed sparsity target.
    None = a plain run to the target."""
    k = f"{key}.{model_name}"
    on = _kept_input(st.checkbox, "Faithfulness budget: find the sparsest circuit that meets it", f"{k}.use_budget",
                     is_budget_default(model_name),
                     help="One run to the target sparsity ranks the edges; a bisection over sizes and short "
                          "warm-started runs then look for the smallest circuit that still meets the budget on "
                          "the validation split. The explored frontier is plotted after the run.")
    return budget_fields(model_name, key) if on else None


def budget_fields(model_name: str, key: str = "prune") -> Budget | None:
    """What to keep (metric share, accuracy share or KL) and how much; None after showing why it is impossible."""
    k = f"{key}.{model_name}"
    b1, b2 = st.columns(2)
    kind = _kept_input(b1.selectbox, "Budget on", f"{k}.budget_kind", next(iter(BUDGET_KINDS)),
                       options=list(BUDGET_KINDS))
    value = _kept_input(b2.number_input, "Budget (0.9 = keep 90%; or nats of KL)", f"{k}.budget",
                        DEFAULT_BUDGET.value, min_value=0.0, max_value=100.0, step=0.01, format="%.3g")
    try:
        return Budget(BUDGET_KINDS[kind], float(value))
    except ValueError as e:
        st.error(f"Impossible budget: {e}")
        return None
