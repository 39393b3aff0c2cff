"""AppTest: the node inspector, per-prompt views on the Circuit page; one cut, toggles and saved metadata on Compare."""

from __future__ import annotations

import json
from pathlib import Path

from engine import Circuit
from explorer.layout import node_title

from .test_pages import _ok, _open, _text


def test_inspector_focus_pin_and_prompt_views(app_env):
    at = _open("app_pages/circuit.py")
    at.selectbox(key="circuit.highlight").set_value("a1.h0")
    _ok(at.run())
    assert node_title("a1.h0") in _text(at)
    assert any(t.label.startswith("Incoming (") for t in at.tabs)
    _ok(at.button(key="circuit.focus_on").click().run())
    assert "Focused on a1.h0" in _text(at)
    _ok(at.button(key="circuit.pin").click().run())
    assert at.session_state["circuit.pinned"] == ["a1.h0"]
    at.checkbox(key="circuit.effects").check()
    _ok(at.run())
    effects = [df.value for df in at.dataframe if "effect" in df.value.columns]
    assert effects and len(effects[0]) > 0
    assert "Exact:" in _text(at)  # a small circuit: each edge removed in turn
    labels = [m.label for m in at.metric]
    assert "full model" in labels and "circuit" in labels  # the head's direct effect, both ways
    at.selectbox(key="circuit.highlight").set_value("m0")
    _ok(at.run())
    assert "MLP 0" in _text(at)


def test_typed_prompt_with_a_misaligned_twin_is_refused(app_env):
    at = _open("app_pages/circuit.py")
    opts = at.selectbox(key="circuit.prompt").options
    at.selectbox(key="circuit.prompt").set_value(len(opts) - 1)
    _ok(at.run())
    at.text_input(key="circuit.typed_corrupt").set_value("a much longer corrupted prompt than the clean one is")
    _ok(at.run())
    assert any("Cannot use this prompt pair" in e.value for e in at.error)


def test_compare_one_cut_toggles_and_intersection_metadata(app_env):
    at = _open("app_pages/compare.py")
    at.radio(key="compare.cut").set_value("edge count")
    _ok(at.run())
    at.slider(key="compare.cut_edges").set_value(10)
    _ok(at.run())
    table = next(df.value for df in at.dataframe if "p-value" in df.value.columns)
    assert table["|A|"].tolist() == [10] and table["|B|"].tolist() == [10]
    at.checkbox(key="compare.show.0").uncheck()
    _ok(at.run())
    _ok(at.button[0].click().run())  # save the intersection (switches to the Circuit page)
    saved = [Circuit.load(p) for p in Path(app_env["CIRCUIT_LIBRARY"]).glob("*.safetensors")]
    inter = next(c for c in saved if c.meta.get("method") == "intersection")
    parents = json.loads(inter.meta["parents"])
    assert [p["task"] for p in parents] == ["boolean_instruction", "boolean_fewshot"] or \
        sorted(p["task"] for p in parents) == ["boolean_fewshot", "boolean_instruction"]
    assert inter.meta["task"] and inter.meta["task"] != "?"
