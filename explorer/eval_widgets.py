"""Which task a circuit is measured on: its own saved task by default, only tasks its model can run, and a
user's choice kept for that circuit (or that set of circuits) alone. Used by the Circuit page's faithfulness
panel and Compare's evaluation matrix.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st

import engine

from . import resources, state
from .text import bold

if TYPE_CHECKING:
    from engine import Circuit, Task


def session_data(task_name: str) -> tuple[str, bytes] | None:
    """The JSONL file uploaded in this session whose task is `task_name` (a circuit pruned on it), if any."""
    up = state.session().data_upload
    return up if up is not None and Path(up[0]).stem == task_name else None


def offered(model_name: str, own: Iterable[str]) -> list[str]:
    """Tasks to offer: those the model can run, plus the circuits' own tasks that can be built here
    (a built-in task a circuit was pruned on; an uploaded file this session still holds)."""
    names = resources.task_names(model_name)
    extra = [t for t in own if t and t not in names and (t in engine.TASKS or session_data(t) is not None)]
    if resources.tracr_program(model_name):
        extra = []  # a Tracr program reads only its own inputs
    return names + list(dict.fromkeys(extra))


def missing_note(own: Iterable[str], options: list[str]) -> None:
    """Say which circuits' own tasks cannot be measured here, and how to get them back."""
    for t in dict.fromkeys(t for t in own if t and t not in options):
        where = ("an uploaded data file this session no longer has: upload it again on the **Prune** page to "
                 "measure on it" if t not in engine.TASKS else "a task this model cannot run here")
        st.info(f"Pruned on {bold(t)}, {where}. Until then the numbers below are for the task chosen here.")


def load_task(model_name: str, name: str) -> Task:
    """A built-in task, or the session's uploaded JSONL of that name. Raises KeyError / ValueError / DataError."""
    data = session_data(name) if name not in engine.TASKS else None
    if data is not None:
        return resources.jsonl_task(model_name, data[1], data[0])
    return resources.get_task(model_name, name)


def circuit_task(circuit: Circuit, model_name: str, key: str) -> str:
    """The Circuit page's task choice: the circuit's saved task unless the user picked another for this circuit."""
    own = circuit.meta.get("task", "")
    options = offered(model_name, [own])
    missing_note([own], options)
    default = own if own in options else resources.default_task(model_name)
    default = default if default in options else options[0]
    k = state.kept(f"{key}.{circuit.circuit_id}", default, options)
    name = st.selectbox("Evaluated on", options, key=k, help="The circuit's own task unless you pick another; "
                        "your pick holds for this circuit only.")
    state.remember(k, name, default)
    return name


def compare_tasks(circuits: dict[str, Circuit], model_name: str, key: str) -> list[str]:
    """Compare's task choice: the circuits' own tasks unless the user picked others for this set of circuits."""
    own = [c.meta.get("task", "") for c in circuits.values()]
    options = offered(model_name, own)
    missing_note(own, options)
    default = [t for t in dict.fromkeys(own) if t in options] or [resources.default_task(model_name)]
    default = [t for t in default if t in options]
    k = state.kept(f"{key}.{'-'.join(sorted(c.circuit_id for c in circuits.values()))}", default)
    st.session_state[k] = [t for t in st.session_state[k] if t in options]
    picked = st.multiselect("Tasks / prompt styles", options, key=k)
    state.remember(k, picked, default)
    return picked
