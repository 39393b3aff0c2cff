"""Numbers the user can believe: the task a circuit is measured on, uploads that show at once (AppTest, tiny model)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[2] / "app.py")
CIRCUIT = "app_pages/circuit.py"


def _ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    return at


def _open(page: str) -> AppTest:
    at = _ok(AppTest.from_file(APP, default_timeout=60).run())
    return _ok(at.switch_page(page).run())


def _picker(at: AppTest):
    return next(s for s in at.selectbox if s.label == "Circuit")


def _pick(at: AppTest, name: str) -> AppTest:
    picker = _picker(at)
    return _ok(picker.set_value(next(o for o in picker.options if o.startswith(name))).run())


def _eval_task(at: AppTest):
    return next(s for s in at.selectbox if s.label == "Evaluated on")


@pytest.fixture()
def ioi_only_model(app_env, tmp_path, monkeypatch) -> Path:
    """The tiny model, declared (like the embedded models' train_log.json) as trained on IOI alone."""
    src = Path(app_env["CIRCUIT_EXPLORER_MODELS"].split("=", 1)[1])
    dst = tmp_path / "tiny_ioi"
    shutil.copytree(src, dst)
    (dst / "train_log.json").write_text(json.dumps({"recipe": {"tasks": ["ioi"]}}))
    monkeypatch.setenv("CIRCUIT_EXPLORER_MODELS", f"tiny={dst}")
    return dst


def test_faithfulness_follows_each_circuits_own_task(app_env):
    at = _open(CIRCUIT)
    at = _pick(at, "boolean-instruction")
    assert _eval_task(at).value == "boolean_instruction"
    at = _pick(at, "boolean-fewshot")
    assert _eval_task(at).value == "boolean_fewshot"   # was: the previous circuit's boolean_instruction


def test_a_task_change_sticks_to_that_circuit_only(app_env):
    at = _pick(_open(CIRCUIT), "boolean-instruction")
    _ok(_eval_task(at).set_value("greater_than").run())
    at = _pick(at, "boolean-fewshot")
    assert _eval_task(at).value == "boolean_fewshot"
    at = _pick(at, "boolean-instruction")
    assert _eval_task(at).value == "greater_than"


def test_only_tasks_the_model_can_run_are_offered(ioi_only_model):
    at = _pick(_open(CIRCUIT), "boolean-fewshot")
    assert _eval_task(at).options == ["ioi", "boolean_fewshot"]   # its training task, and the circuit's own
    at = _ok(at.switch_page("app_pages/compare.py").run())
    options = at.multiselect(key=next(k for k in at.session_state if str(k).startswith("compare.tasks."))).options
    assert sorted(options) == ["boolean_fewshot", "boolean_instruction", "ioi"]


def _jsonl() -> bytes:
    pairs = [("True", "False"), ("False", "True")] * 4
    return "\n".join(json.dumps({"clean": f"{a} and {b} is<predict> {a}</predict>",
                                 "corrupted": f"{b} and {a} is<predict> {b}</predict>"}) for a, b in pairs).encode()


def test_a_circuit_pruned_on_an_uploaded_file_is_measured_on_it(app_env):
    from engine import Circuit, load_model

    model = load_model(app_env["CIRCUIT_EXPLORER_MODELS"].split("=", 1)[1], device="cpu")
    lib = Path(app_env["CIRCUIT_LIBRARY"])
    lib.mkdir(parents=True)
    scores = torch.rand(model.graph.n_src, model.graph.n_dst, generator=torch.Generator().manual_seed(3))
    meta = {"model": "tiny", "config_hash": model.cfg.hash(), "task": "mine", "name": "on-my-file"}
    Circuit(model.graph, scores * model.graph.real_edges, torch.zeros_like(model.graph.real_edges),
            meta=meta).top_n(20).save(lib / "on-my-file.safetensors")

    at = _pick(_open(CIRCUIT), "on-my-file")
    assert "mine" not in _eval_task(at).options
    assert any("mine" in i.value and "no longer has" in i.value for i in at.info), [i.value for i in at.info]

    at = _ok(at.switch_page("app_pages/prune.py").run())     # the session gets the file back
    at.radio(key="prune.source").set_value("Upload JSONL")
    _ok(at.run())
    at.file_uploader(key="prune.upload").set_value(("mine.jsonl", _jsonl(), "application/json"))
    _ok(at.run())
    at = _pick(_ok(at.switch_page(CIRCUIT).run()), "on-my-file")
    assert _eval_task(at).value == "mine"
    assert not any("no longer has" in i.value for i in at.info)


def test_compare_matrix_follows_the_circuits_tasks(app_env):
    at = _open("app_pages/compare.py")
    key = next(k for k in at.session_state if str(k).startswith("compare.tasks."))
    assert sorted(at.multiselect(key=key).value) == ["boolean_fewshot", "boolean_instruction"]
    _ok(at.multiselect(key=key).set_value(["ioi"]).run())
    pick = at.multiselect(key="compare.pick")
    _ok(pick.set_value(pick.value[:1]).run())       # another set of circuits (one, then the pair again)
    _ok(at.multiselect(key="compare.pick").set_value(pick.options[:2]).run())
    assert at.multiselect(key=key).value == ["ioi"]  # the same pair keeps the user's choice


def _edges_json(app_env, n: int) -> bytes:
    from engine import Circuit

    c = Circuit.load(Path(app_env["CIRCUIT_EXAMPLES"]) / "boolean-fewshot.safetensors").top_n(n)
    return json.dumps(c.to_edges_json()).encode()


def test_an_uploaded_circuit_shows_at_once(app_env):
    at = _open(CIRCUIT)
    at.file_uploader(key="circuit.upload").set_value(("first.edges.json", _edges_json(app_env, 7), "application/json"))
    _ok(at.run())
    assert _picker(at).value.startswith("first.edges (uploaded)")
    assert at.metric[0].value == "7"
    at.file_uploader(key="circuit.upload").set_value(("second.edges.json", _edges_json(app_env, 9),
                                                      "application/json"))
    _ok(at.run())
    assert _picker(at).value.startswith("second.edges (uploaded)")
    assert at.metric[0].value == "9"


def test_one_slider_step_moves_at_least_one_edge(app_env):
    at = _open(CIRCUIT)
    at.radio(key="circuit.mode").set_value("sparsity")
    _ok(at.run())
    slider = next(s for s in at.slider if s.label.startswith("Sparsity"))
    edges = int(at.metric[0].value)
    for _ in range(3):
        _ok(slider.set_value(slider.value + slider.step).run())
        slider = next(s for s in at.slider if s.label.startswith("Sparsity"))
        assert int(at.metric[0].value) == edges - 1, (slider.value, at.metric[0].value)
        edges -= 1
    at.radio(key="circuit.mode").set_value("score")
    _ok(at.run())
    assert next(s for s in at.select_slider if s.label == "Score ≥")

    from engine import Circuit
    from explorer import circuit_widgets, graph_view

    c = Circuit.load(Path(app_env["CIRCUIT_EXAMPLES"]) / "boolean-fewshot.safetensors")
    for most in (2000, 7):
        counts = [graph_view.select(c, "score", v)[0].n_edges for v in circuit_widgets.score_steps(c, most)]
        assert all(a > b for a, b in zip(counts, counts[1:])), counts
        assert counts[0] == c.graph.n_edges and len(counts) == min(most, c.graph.n_edges)


def test_histogram_axis_has_few_rounded_ticks():
    from explorer import charts

    spec = charts.histogram_spec([i / 997 for i in range(997)], 0.5)
    axis = spec["layer"][0]["encoding"]["x"]["axis"]
    assert axis["tickCount"] <= 10 and axis["format"] == ".2~f"
    assert spec["$schema"].endswith("/v6.json")


def test_a_problem_with_the_whole_data_file_is_one_message_without_line_0(app_env):
    at = _ok(AppTest.from_file(APP, default_timeout=60).run())
    at.radio(key="prune.source").set_value("Upload JSONL")
    _ok(at.run())
    at.file_uploader(key="prune.upload").set_value(("**empty**.jsonl", b"\n\n", "application/json"))
    _ok(at.run())
    (error,) = [e.value for e in at.error]
    assert "line 0" not in error and error.startswith("\\*\\*empty\\*\\*.jsonl has 1 problem: "), error
