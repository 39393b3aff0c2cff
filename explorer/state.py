"""The one place that reads and writes st.session_state: the Session dataclass and widget keys."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import streamlit as st

if TYPE_CHECKING:
    from engine import Circuit

# Widget keys: "<page>.<widget>".
FRAME = "app.frame"  # set by app.py's shared sidebar: pages know they run inside the router
MODEL = "sidebar.model"
MODEL_CUSTOM = "sidebar.model_custom"
CIRCUIT_PICK = "circuit.pick"
THRESHOLD_MODE = "circuit.mode"
HIDE_DANGLING = "circuit.hide_dangling"
HIGHLIGHT = "circuit.highlight"  # the selected node (selectbox and graph clicks)
FOCUS = "circuit.focus"  # {"node", "k"}: the graph shows only that neighbourhood
PINNED = "circuit.pinned"  # nodes drawn at any threshold
COMPARE_PICK = "compare.pick"
KEPT = "app.kept"  # copies of widget values that must outlive a page switch (see kept)


@dataclass
class Session:
    """Everything this browser session produced. Widget values live under their own keys."""

    runs: list[str] = field(default_factory=list)  # ids of the pruning runs this browser follows (oldest first;
                                                   # the URL's ?run= carries the last few across a reload)
    circuit_name: str | None = None            # library entry the Circuit page shows
    uploaded: dict[str, Circuit] = field(default_factory=dict)  # circuits opened from files, by name
    data_upload: tuple[str, bytes] | None = None  # the last JSONL uploaded on the Prune page (name, bytes):
                                                  # a file uploader forgets its file on a page switch
    unsaved: dict[str, Circuit] = field(default_factory=dict)   # results not in the library (e.g. cancelled)
    learn_step: int = 0                        # Learn page: how many pruning stages have run
    learn_model: str = ""                      # Learn page: the model those stages belong to
    shown: Circuit | None = None               # Circuit page: the selection on screen (for faithfulness)
    shown_threshold: float = 0.0
    last_seen: str = ""                        # circuit id seen at the last faithfulness poll
    notices: list[str] = field(default_factory=list)
    upload_errors: dict[str, str] = field(default_factory=dict)  # circuit uploader key -> why its file did not open


def session() -> Session:
    return st.session_state.setdefault("session", Session())


def get(key: str, default: object = None) -> object:
    """A widget's current value (for widgets drawn further down the page)."""
    return st.session_state.get(key, default)


def set_value(key: str, value: object) -> None:
    """Preset a widget's value before it is drawn (e.g. open a new result in the Circuit page)."""
    st.session_state[key] = value


def kept(key: str, default: object, options: object = None) -> str:
    """Give the widget `key` its value from before a page switch, else `default`; returns the key.

    Streamlit drops the state of every widget a run does not draw, so a page's widgets reset when the
    user visits another page and comes back. Call this before drawing the widget (with `key=` and no
    default of its own), and `remember` its value after. A remembered choice no longer in `options` is dropped.
    """
    store = st.session_state.setdefault(KEPT, {})
    if key not in st.session_state:
        value = store.get(key, default)
        if options is not None and value not in list(options):
            value = default
        st.session_state[key] = value
    return key


def remember(key: str, value: object, default: object = None) -> None:
    """Keep `value` for `kept`; with `default` given, only a value that differs from it (a choice the user made,
    not a default that may change, e.g. when an option it stood in for becomes available)."""
    store = st.session_state.setdefault(KEPT, {})
    if default is not None and value == default:
        store.pop(key, None)
    else:
        store[key] = value
