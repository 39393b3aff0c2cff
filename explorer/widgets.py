"""Reusable Streamlit blocks shared by every page: the sidebar model picker, model and task pickers, Evaluator answers.

The Prune page's blocks live in `prune_widgets.py`, the circuit blocks (pickers, threshold, live graph, exports) in
`circuit_widgets.py`.

Torch, plotly and networkx load on first use, not on import: app.py imports this module on every page,
and the Prune page draws its title and form before the model (and torch) have loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st

import engine

from . import resources, state
from .text import bold, literal

if TYPE_CHECKING:
    from engine import MaskedTransformer, Task

OTHER_MODEL = "Other: hub id or local folder…"


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
    st.sidebar.caption(f"Circuit library: {literal(resources.library().folder)}")
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
        st.error(f"Could not load model {bold(name)}: {literal(e)}\n\nOffline? Use an embedded model or a local folder.")
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
            st.caption(engine.TASKS[name].description if name in engine.TASKS else literal(task.description))
            return task
        up = st.file_uploader("JSONL: one {\"clean\": \"…<predict>answer</predict>\", \"corrupted\": …} per line",
                              type=["jsonl", "json", "txt"], key=f"{key}.upload")
        sess = state.session()
        if up is not None:
            sess.data_upload = (up.name, up.getvalue())
        elif sess.data_upload is not None:
            note, forget = st.columns([5, 1], vertical_alignment="center")
            note.caption(f"Using {bold(sess.data_upload[0])}, uploaded earlier in this session; upload another "
                         "file to replace it.")
            if forget.button("Forget it", key=f"{key}.forget_upload"):
                sess.data_upload = None
                st.rerun()
        if sess.data_upload is None:
            return None
        name, data = sess.data_upload
        task = resources.jsonl_task(model_name, data, name)
        if note := task.meta.get("splits_note"):
            st.info(f"{literal(name)}: {literal(note)}.")
        return task
    except engine.DataError as e:
        st.error(data_error_text(e))
    except (KeyError, ValueError) as e:
        st.error(f"Cannot build this task for {bold(model_name)}: {literal(e)}")
    return None



def data_error_text(e: engine.DataError, limit: int = 30) -> str:
    """The problems of bad task data as Markdown, user text escaped: `line n: reason`, or the reason alone
    for one about the whole file (numbered None, e.g. an empty or binary file)."""
    items = [literal(r) if n is None or n <= 0 else f"{e.what} {n}: {literal(r)}" for n, r in e.problems[:limit]]
    if len(items) == 1:
        return f"{literal(Path(e.source).name)} has 1 problem: {items[0]}"
    more = f"\n- … and {len(e.problems) - limit} more" if len(e.problems) > limit else ""
    return f"The data has {len(e.problems)} problems:\n" + "\n".join(f"- {i}" for i in items) + more


def await_result(status: tuple[str, object], waiting: str) -> object | None:
    """Unpack an Evaluator answer: the result, or None after showing progress or the error."""
    kind, value = status
    if kind == "done":
        return value
    if kind == "error":
        st.warning(f"Evaluation failed: {literal(value)}")
    elif waiting:
        st.caption(f":material/hourglass_top: {waiting}")
    return None
