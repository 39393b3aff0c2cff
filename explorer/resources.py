"""Cached loaders and computations: @st.cache_resource / @st.cache_data around the engine and renderers.

Importing this module loads neither torch nor the engine's model code (`engine` resolves names on first use),
so the app's first page draws before torch has loaded; the functions below load it when they are called.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st

import engine

from .evaluator import Evaluator
from . import theme
from .library import Library

if TYPE_CHECKING:
    from engine import Circuit, EvalResult, MaskedTransformer, Task

    from .lessons import Stage

ENV_MODELS = "CIRCUIT_EXPLORER_MODELS"
"""`name=path;name2=path2`: the models offered instead of the shipped ones (tests, custom setups)."""
N_EXAMPLES = 256  # examples per built-in task (train; validation and test get a quarter each: 64 prompts). With 96
# (24 validation prompts) the Prune page's budget search on ioi-2l picked circuits keeping 0.935 / 0.947 of the metric
# on validation and 0.898 / 0.884 on test (ioi / ioi_t1); with 64 validation prompts 0.968 / 1.001 on test, no slower.
TASK_FOR_MODEL = {"ioi": "ioi", "greater": "greater_than", "pronoun": "gendered_pronoun", "boolean": "boolean_instruction"}
TRACR = "tracr:"  # model_choices() value of a shipped Tracr program: "tracr:<program>"


def model_choices() -> dict[str, str]:
    """Offered models, name -> what get_model loads: $CIRCUIT_EXPLORER_MODELS, else the embedded models
    (the teaching IOI model first) and then the shipped Tracr programs as `tracr-<program>`. Reads folder
    names only (no torch), so the sidebar draws at once."""
    spec = os.environ.get(ENV_MODELS, "").strip()
    if spec:
        pairs = [p.split("=", 1) if "=" in p else [Path(p).name, p] for p in spec.split(";") if p.strip()]
        return {name.strip(): path.strip() for name, path in pairs}
    names = sorted(engine.embedded_models(), key=lambda n: ("ioi" not in n.lower(), n))
    return {**{name: name for name in names}, **{f"tracr-{p}": f"{TRACR}{p}" for p in engine.tracr_models()}}


def tracr_program(model_name: str) -> str | None:
    """The Tracr program behind an offered model name, or None for a language model."""
    source = model_choices().get(model_name, model_name)
    return source[len(TRACR):] if source.startswith(TRACR) else None


def task_names(model_name: str) -> list[str]:
    """Tasks a model can be pruned and evaluated on: a Tracr program has its own inputs only; a model whose folder
    says what it was trained on (the embedded models' `train_log.json`) those tasks; any other model every task."""
    program = tracr_program(model_name)
    if program:
        return [f"tracr-{program}"]
    return trained_tasks(model_name) or list(engine.TASKS)


def trained_tasks(model_name: str) -> list[str]:
    """The built-in tasks named in the model folder's `train_log.json` (`recipe.tasks`); [] when it names none."""
    source = model_choices().get(model_name, model_name)
    folder = engine.embedded_models().get(source) or Path(source)
    try:
        recipe = json.loads((Path(folder) / "train_log.json").read_text()).get("recipe", {})
    except (OSError, ValueError, AttributeError):  # no such file (hub ids, other folders) or not a log
        return []
    return [t for t in recipe.get("tasks", []) if t in engine.TASKS] if isinstance(recipe, dict) else []


def prune_defaults(model_name: str) -> engine.PruneConfig:
    """The settings the Prune form starts from: the engine's defaults, or those that recover Tracr circuits."""
    program = tracr_program(model_name)
    return engine.PruneConfig() if program is None else engine.tracr.tracr_prune_config(program)


def default_task(model_name: str) -> str:
    if (program := tracr_program(model_name)) is not None:
        return f"tracr-{program}"
    for key, task in TASK_FOR_MODEL.items():
        if key in model_name.lower():
            return task
    return "ioi"


ENV_THREADS = "CIRCUIT_EXPLORER_THREADS"
_TORCH_THREADS: list[int] = []  # torch's own default, read before the first change


def _tune_threads(model: MaskedTransformer) -> None:
    """Small models run fastest on one intra-op thread: 80 pruning steps of the embedded IOI model took
    6 s on 1 thread and 84 s on 2 on a busy 2-core machine. $CIRCUIT_EXPLORER_THREADS overrides."""
    import torch  # noqa: PLC0415 - loaded by the model already; kept out of this module's import

    if not _TORCH_THREADS:
        _TORCH_THREADS.append(torch.get_num_threads())
    env = os.environ.get(ENV_THREADS, "").strip()
    from engine.runtime import is_small_model  # noqa: PLC0415 - imports torch, like the model already did

    small = is_small_model(model.cfg)
    torch.set_num_threads(int(env) if env.isdigit() and int(env) > 0 else 1 if small else _TORCH_THREADS[0])


@st.cache_resource(max_entries=4, show_spinner="Loading model…")
def get_model(name: str, split: bool = False) -> MaskedTransformer:
    """Shared by every session and thread: never mutated (gates are forward arguments, not state).
    `split`: the graph with separate token and position writers (the Edge Pruning authors' graph).

    Raises:
        ValueError: the model cannot be found or loaded (offline hub id, bad folder).
    """
    if (program := tracr_program(name)) is not None:
        model = engine.tracr.load_tracr_model(program, split_embeddings=split)[0]
    else:
        model = engine.load_model(model_choices().get(name, name), device=None, split_embeddings=split)
    model = model.eval().requires_grad_(False)
    _tune_threads(model)
    return model


@st.cache_resource(max_entries=16, show_spinner="Building task…")
def get_task(model_name: str, task_name: str, n: int = N_EXAMPLES, seed: int = 0) -> Task:
    """A built-in task tokenized for the model, or a Tracr program's own inputs. Raises KeyError / ValueError."""
    if (program := tracr_program(model_name)) is not None:
        if task_name != f"tracr-{program}":
            raise KeyError(f"the Tracr program {program!r} reads only its own inputs (task 'tracr-{program}')")
        return engine.load_tracr(program, seed=seed)[2]  # its own sizes: every input is tested
    model = get_model(model_name)
    if model.tokenizer is None:
        raise ValueError(f"model {model_name!r} has no tokenizer files, so tasks cannot be tokenized for it")
    return engine.get_task(task_name, model.tokenizer, n=n, seed=seed, n_ctx=model.cfg.n_ctx)


@st.cache_resource(max_entries=8, show_spinner="Reading JSONL…")
def jsonl_task(model_name: str, data: bytes, filename: str) -> Task:
    """A task from uploaded JSONL bytes. Raises engine.DataError listing bad lines."""
    model = get_model(model_name)
    if model.tokenizer is None:
        raise ValueError(f"model {model_name!r} has no tokenizer files")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / (Path(filename).name or "upload.jsonl")
        path.write_bytes(data)
        return engine.load_jsonl_task(path, model.tokenizer, model.cfg.n_ctx, name=Path(filename).stem)


def task_key(task: Task) -> str:
    return f"{task.name}:{len(task.split('test')) if 'test' in task.splits else 0}:{id(task)}"


@st.cache_resource(show_spinner=False)
def evaluator() -> Evaluator:
    """One evaluation worker per process (results depend only on model, task and circuit)."""
    return Evaluator()


def evaluate(model_name: str, task: Task, circuit: Circuit) -> tuple[str, EvalResult | str | None]:
    """("done", EvalResult) | ("error", message) | ("pending", None): evaluated on the worker thread."""
    model = get_model(model_name, circuit.graph.split_embeddings)
    key = ("eval", model_name, task_key(task), circuit.circuit_id)
    return evaluator().request(key, lambda: engine.evaluate(model, task, circuit))


@st.cache_data(max_entries=32, show_spinner="Drawing graph…")
def graph_html(circuit_id: str, max_edges: int, title: str, state_key: str, _circuit: Circuit,
               _state: dict) -> str:
    """The circuit with every edge up to `max_edges` (the threshold is applied in the page's JavaScript)."""
    from . import graph_view, pyvis_html  # noqa: PLC0415 - torch and networkx load after the first page

    g = graph_view.to_nx(_circuit, include="all", max_edges=max_edges)
    return pyvis_html.render(g, title=title, graph_id=f"g{circuit_id}-{max_edges}", state=_state,
                             height_px=theme.graph_height(_circuit.graph.n_layers))


@st.cache_data(max_entries=16, show_spinner="Drawing graph…")
def compare_html(key: str, title: str, _circuits: dict[str, Circuit], _legend: list, _state: dict | None = None) -> str:
    """The compare graph of `_circuits` (cut to one threshold); `key` names the circuits and the cut."""
    from . import graph_view, pyvis_html  # noqa: PLC0415 - torch and networkx load after the first page

    g = graph_view.compare_nx(_circuits)
    n_layers = next(iter(_circuits.values())).graph.n_layers
    return pyvis_html.render(g, title=title, graph_id=f"cmp-{key}", legend=_legend, state=_state,
                             height_px=theme.graph_height(n_layers))


def library() -> Library:
    return Library()


@st.cache_resource(max_entries=64, show_spinner=False)
def _load(path: str, mtime: float) -> Circuit:
    circuit = engine.Circuit.load(path)
    return circuit if circuit.meta.get("name") else replace(circuit, meta={**circuit.meta, "name": Path(path).stem})


def load_entry(name: str) -> Circuit:
    """A library circuit by name (cached until its file changes). Raises ValueError / KeyError."""
    entry = library().get(name)
    return _load(str(entry.path), entry.path.stat().st_mtime)


def circuit_from_upload(data: bytes, filename: str) -> Circuit:
    """A circuit from an uploaded `.safetensors` (never unpickled) or `edges.json`. Raises ValueError."""
    suffix = ".json" if filename.lower().endswith(".json") else ".safetensors"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"upload{suffix}"
        path.write_bytes(data)
        circuit = engine.Circuit.load_edges_json(path) if suffix == ".json" else engine.Circuit.load(path)
    name = Path(filename).stem or "upload"
    return replace(circuit, meta={**circuit.meta, "name": circuit.meta.get("name") or name})


def content_key(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def model_key(name: str) -> str:
    """The offered model name for a circuit's `model` metadata (which may be the folder it was loaded from)."""
    for key, path in model_choices().items():
        if name in (key, path):
            return key
    return name


@st.cache_resource(max_entries=48, show_spinner=False)
def learn_stage(model_name: str, task_name: str, index: int, max_steps: int) -> Stage:
    """Stage `index` of Learn's step-by-step run, continued from stage index - 1 (cached: a class shares them)."""
    from . import lessons  # noqa: PLC0415 - torch stays out of the first render
    previous = learn_stage(model_name, task_name, index - 1, max_steps).circuit if index > 0 else None
    return lessons.run_stage(get_model(model_name), get_task(model_name, task_name), lessons.STAGE_TARGETS[index],
                             previous, max_steps)


@st.cache_resource(max_entries=16, show_spinner="Measuring the full model…")
def full_model_result(model_name: str, task_name: str) -> EvalResult:
    """The full model on the task's test split (Learn's stage 0; cached per model and task)."""
    model = get_model(model_name)
    return engine.evaluate(model, get_task(model_name, task_name), engine.Circuit.full(model.graph))


@st.cache_resource(max_entries=16, show_spinner=False)
def learn_schedule(model_name: str, task_name: str, n_steps: int, warmup: int, target: float) -> engine.PruneLog:
    """Learn's schedule demo: a real short run (cached per setting)."""
    from . import lessons  # noqa: PLC0415 - torch stays out of the first render
    return lessons.schedule_run(get_model(model_name), get_task(model_name, task_name), n_steps, warmup, target)


@st.cache_data(max_entries=32, show_spinner=False)
def static_graph_html(circuit_id: str, title: str, _circuit: Circuit) -> str:
    """Only the circuit's own edges (small graphs that are redrawn as a whole)."""
    from . import graph_view, pyvis_html  # noqa: PLC0415 - torch and networkx load after the first page

    return pyvis_html.render(graph_view.to_nx(_circuit), title=title, graph_id=f"s{circuit_id}")
