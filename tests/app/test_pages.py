"""AppTest smoke and behaviour tests for every page, with the tiny model (see conftest)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

from explorer.runs import RunStore

APP = str(Path(__file__).resolve().parents[2] / "app.py")
PAGES = ["app_pages/circuit.py", "app_pages/compare.py", "app_pages/prompts.py", "app_pages/learn.py"]


def _app() -> AppTest:
    return AppTest.from_file(APP, default_timeout=60)


def _open(page: str) -> AppTest:
    """The app as a user meets it: app.py first, then the page through the router."""
    return _ok(_ok(_app().run()).switch_page(page).run())


def _ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    return at


def _text(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [e.value for e in at.error]
    parts += [i.value for i in at.info] + [s.value for s in at.success] + [w.value for w in at.warning]
    return "\n".join(str(p) for p in parts)


def test_every_page_renders(app_env):
    at = _ok(_app().run())
    assert at.title[0].value.startswith("Prune")
    assert "46 edges" in _text(at)
    for page in PAGES:
        _ok(at.switch_page(page).run())
        assert at.title, page
    assert not at.error, [e.value for e in at.error]


def _record(at: AppTest) -> dict:
    """The record of the run this session started last (what the page itself reads)."""
    return RunStore(os.environ["CIRCUIT_LIBRARY"]).read(at.session_state["session"].runs[-1])


def _wait_for_job(at: AppTest, timeout: float = 60) -> None:
    t0 = time.time()
    while _record(at)["state"] == "running":
        assert time.time() - t0 < timeout, "pruning did not finish"
        time.sleep(0.3)
    _ok(at.run())


def _pruned(steps: int):  # noqa: ANN202
    """The Prune page after a run of `steps` steps at batch 8 has ended."""
    at = _ok(_app().run())
    at.number_input(key="prune.tiny.steps").set_value(steps)
    at.number_input(key="prune.tiny.batch").set_value(8)
    _ok(at.button(key="prune.run").click().run())
    _wait_for_job(at)
    return at


def test_prune_in_background_saves_to_library(app_env):
    at = _pruned(4)
    assert "Saved to the library" in _text(at), _text(at)
    saved = list(Path(app_env["CIRCUIT_LIBRARY"]).glob("*.safetensors"))
    assert len(saved) == 1
    sidecar = json.loads(saved[0].with_suffix(".json").read_text())
    assert len(sidecar["prune_log"]["steps"]) == 4
    _ok(at.switch_page("app_pages/circuit.py").run())  # opens the new result
    picker = next(s for s in at.selectbox if s.label == "Circuit")
    assert saved[0].stem in picker.value


def test_cancel_stops_cleanly_and_saves_nothing(app_env):
    at = _ok(_app().run())
    at.number_input(key="prune.tiny.steps").set_value(5000)
    at.number_input(key="prune.tiny.batch").set_value(4)
    _ok(at.button(key="prune.run").click().run())
    run_id = at.session_state["session"].runs[-1]
    t0 = time.time()
    while not _record(at).get("steps_done") and time.time() - t0 < 60:
        time.sleep(0.1)
    _ok(at.run())
    at.button(key=f"prune.cancel.{run_id}").click()
    _ok(at.run())
    _wait_for_job(at)
    assert _record(at)["state"] == "cancelled" and _record(at)["steps_done"] < 5000
    assert not list(Path(app_env["CIRCUIT_LIBRARY"]).glob("*.safetensors"))
    assert "stopped early" in _text(at)
    assert any(b.label == "Save this result to the library" for b in at.button)


def test_impossible_settings_and_unloadable_model(app_env):
    at = _ok(_app().run())
    at.number_input(key="prune.tiny.lr_gates").set_value(0.0)
    _ok(at.button(key="prune.run").click().run())
    assert any("Impossible settings" in e.value for e in at.error)
    # AppTest drops the entrypoint's sidebar from its tree after a rerun, so set the widgets by key.
    at.session_state["sidebar.model"] = "Other: hub id or local folder…"
    at.session_state["sidebar.model_custom"] = "/no/such/model/folder"
    _ok(at.run())
    assert any("Could not load model" in e.value for e in at.error)


def test_bad_jsonl_upload_lists_line_numbers(app_env):
    at = _ok(_app().run())
    at.radio(key="prune.source").set_value("Upload JSONL")
    _ok(at.run())
    bad = b'{"clean": "a b<predict> c</predict>", "corrupted": "a<predict> c</predict>"}\nnot json\n'
    at.file_uploader(key="prune.upload").set_value(("bad.jsonl", bad, "application/json"))
    _ok(at.run())
    errors = "\n".join(e.value for e in at.error)
    assert "line 2" in errors, errors


def test_binary_empty_and_train_test_only_uploads(app_env):
    """A binary file and an empty one: one message each, no line numbers; train + test lines only: validation
    taken from train, and the page says so."""
    import random
    at = _ok(_app().run())
    at.radio(key="prune.source").set_value("Upload JSONL")
    _ok(at.run())
    for name, data, want in [("model.jsonl", random.Random(0).randbytes(2**20), "not a UTF-8 text file"),
                             ("empty.jsonl", b"", "no examples: it is empty")]:
        at.file_uploader(key="prune.upload").set_value((name, data, "application/octet-stream"))
        _ok(at.run())
        errors = "\n".join(e.value for e in at.error)
        assert "1 problem" in errors and want in errors and "line" not in errors.split(want)[0], errors
    line = json.dumps({"clean": "When Mary and John went to the store, John gave a drink to<predict> Mary</predict>",
                       "corrupted": "When Alice and Bob went to the store, John gave a drink to<predict> Mary</predict>",
                       "split": "train"})
    lines = [line] * 12 + [line.replace('"train"', '"test"')]
    at.file_uploader(key="prune.upload").set_value(("tt.jsonl", "\n".join(lines).encode(), "application/json"))
    _ok(at.run())
    assert not at.error and any("1 of the 12 train lines became the validation split" in i.value for i in at.info)


def _with_upload():  # noqa: ANN202
    """The Prune page with a small valid JSONL uploaded as `mine.jsonl`."""
    at = _ok(_app().run())
    at.radio(key="prune.source").set_value("Upload JSONL")
    _ok(at.run())
    good = "\n".join(json.dumps({"clean": f"{a} and {b} is<predict> {a}</predict>",
                                   "corrupted": f"{b} and {a} is<predict> {b}</predict>"})
                      for a, b in [("True", "False"), ("False", "True")] * 4).encode()
    at.file_uploader(key="prune.upload").set_value(("mine.jsonl", good, "application/json"))
    return _ok(at.run())


def test_uploaded_jsonl_outlives_the_uploader(app_env):
    """A file uploader forgets its file on a page switch; the Prune page keeps using the session's last upload
    (and says so) until another file replaces it or the user forgets it."""
    at = _with_upload()
    assert not at.error, [e.value for e in at.error]
    at.file_uploader(key="prune.upload").set_value(None)   # what the page sees after a page switch
    _ok(at.run())
    assert any("mine.jsonl" in c.value and "uploaded earlier" in c.value for c in at.caption)
    assert not at.error and any("Memory estimate" in c.value for c in at.caption)   # the form has a task
    _ok(at.button(key="prune.forget_upload").click().run())
    assert not any("uploaded earlier" in c.value for c in at.caption)


def test_circuit_threshold_moves_stats(app_env):
    at = _open("app_pages/circuit.py")
    slider = at.slider[0]
    assert slider.label == "Edges kept"
    slider.set_value(5)
    _ok(at.run())
    assert at.metric[0].value == "5"
    shown = _shown_example(app_env, at)
    at.checkbox(key="circuit.hide_dangling").check()
    _ok(at.run())
    assert int(at.metric[0].value) == shown.top_n(5).prune_dangling().n_edges
    at.radio(key="circuit.mode").set_value("sparsity")
    _ok(at.run())
    at.slider[0].set_value(0.5)
    _ok(at.run())
    assert int(at.metric[0].value) == shown.with_sparsity(0.5).prune_dangling().n_edges
    at.radio(key="circuit.mode").set_value("score")
    _ok(at.run())
    from explorer.circuit_widgets import score_steps

    stops = score_steps(shown)   # the score slider stops at distinct edge scores
    t = stops[len(stops) // 2]
    at.select_slider[0].set_value(t)
    _ok(at.run())
    assert int(at.metric[0].value) == shown.threshold(t).prune_dangling().n_edges


def _shown_example(app_env, at: AppTest):  # noqa: ANN001, ANN202
    """The example circuit the Circuit page opened (the first circuit picker names it)."""
    from engine import Circuit

    name = next(s.value for s in at.selectbox if s.label == "Circuit").split(" (example)")[0]
    return Circuit.load(Path(app_env["CIRCUIT_EXAMPLES"]) / f"{name}.safetensors")


def test_circuit_upload_of_a_damaged_file_is_reported(app_env):
    at = _open("app_pages/circuit.py")
    at.file_uploader(key="circuit.upload").set_value(("evil.safetensors", b"\x80\x04pickle?", "application/octet-stream"))
    _ok(at.run())
    assert any("Cannot open evil.safetensors" in e.value for e in at.error)


def test_compare_shows_overlap_and_matrix(app_env):
    at = _open("app_pages/compare.py")
    assert len(at.multiselect(key="compare.pick").value) == 2
    assert any("p-value" in str(df.value.columns.tolist()) for df in at.dataframe)
    assert len(at.dataframe) == 2  # overlap table, evaluation matrix
    at.multiselect(key="compare.pick").set_value(at.multiselect(key="compare.pick").value[:1])
    _ok(at.run())
    assert any("at least two" in i.value for i in at.info)


def test_prompt_lab_handles_script_prompts_and_misaligned_twins(app_env):
    at = _open("app_pages/prompts.py")
    at.text_area(key="prompts.text").set_value("<script>alert(1)</script> Mary | Mary John Mary | x\n"
                                               "Then, Mary and John went | Then, Anna and Paul went | to")
    _ok(at.run())
    table = at.dataframe[0].value
    assert "<script>alert(1)</script> Mary" in table["prompt"].tolist()[0]
    problems = table["problem"].tolist()
    assert "must align" in problems[0] and problems[1] == "", problems   # "Mary John Mary" is one word longer


def test_learn_runs_a_pruning_stage(app_env, short_lessons):
    at = _open("app_pages/learn.py")
    at.slider(key="learn.log_alpha").set_value(-3.0)
    _ok(at.run())
    at.selectbox(key="learn.ablate").set_value("every edge (= the corrupted run)")
    _ok(at.run())
    next_stage = next(b for b in at.button if b.label == "Next stage")
    _ok(next_stage.click().run())
    assert at.dataframe[-1].value["target"].tolist() == [0.0, 0.5]



def test_prune_settings_survive_a_page_switch(app_env):
    at = _ok(_app().run())
    at.number_input(key="prune.tiny.steps").set_value(7)
    at.number_input(key="prune.tiny.sparsity").set_value(0.5)
    at.number_input(key="prune.tiny.lr_gates").set_value(0.25)
    at.selectbox(key="prune.tiny.ablation").set_value("zero")
    at.selectbox(key="prune.task.tiny").set_value("greater_than")
    _ok(at.run())
    for page in ("app_pages/circuit.py", "app_pages/learn.py", "app_pages/prune.py"):
        _ok(at.switch_page(page).run())
    assert at.number_input(key="prune.tiny.steps").value == 7
    assert at.number_input(key="prune.tiny.sparsity").value == 0.5
    assert at.number_input(key="prune.tiny.lr_gates").value == 0.25
    assert at.selectbox(key="prune.tiny.ablation").value == "zero"
    assert at.selectbox(key="prune.task.tiny").value == "greater_than"
    assert at.number_input(key="prune.tiny.batch").value == 32  # untouched: still the default


def test_memory_estimate_follows_the_batch_size(app_env):
    at = _ok(_app().run())
    small = next(c.value for c in at.caption if "Memory estimate" in c.value)
    assert "batch 32" in small
    at.number_input(key="prune.tiny.batch").set_value(512)
    _ok(at.run())
    big = next(c.value for c in at.caption if "Memory estimate" in c.value)
    assert "batch 512" in big and big != small


def test_tracr_program_prunes_with_its_own_settings(app_env, monkeypatch):
    models = f"{app_env['CIRCUIT_EXPLORER_MODELS']};tracr-xproportion=tracr:xproportion"
    monkeypatch.setenv("CIRCUIT_EXPLORER_MODELS", models)
    at = _ok(_app().run())
    at.session_state["sidebar.model"] = "tracr-xproportion"
    _ok(at.run())
    assert "tracr-xproportion" in _text(at) and "23 edges" in _text(at)
    assert at.selectbox(key="prune.task.tracr-xproportion").value == "tracr-xproportion"
    assert at.selectbox(key="prune.tracr-xproportion.ablation").value == "zero"
    from engine.tracr import tracr_prune_config
    assert at.number_input(key="prune.tracr-xproportion.lr_gates").value == tracr_prune_config("xproportion").lr_gates
    assert any("Memory estimate" in c.value for c in at.caption)
    at.number_input(key="prune.tracr-xproportion.steps").set_value(20)
    _ok(at.button(key="prune.run").click().run())
    _wait_for_job(at)
    assert "Saved to the library" in _text(at), _text(at)
    for page in ("app_pages/circuit.py", "app_pages/compare.py", "app_pages/prompts.py"):
        _ok(at.switch_page(page).run())
    assert any("Tracr program" in i.value for i in at.info)


def test_prune_on_the_split_graph_and_open_it(app_env):
    """The Graph control prunes the token + position graph; the Circuit page then measures that circuit."""
    at = _ok(_app().run())
    at.number_input(key="prune.tiny.steps").set_value(3)
    at.number_input(key="prune.tiny.batch").set_value(8)
    at.selectbox(key="prune.tiny.graph").set_value("split")
    _ok(at.button(key="prune.run").click().run())
    _wait_for_job(at)
    saved = list(Path(app_env["CIRCUIT_LIBRARY"]).glob("*.safetensors"))
    from engine import Circuit
    circuit = Circuit.load(saved[0])
    assert circuit.graph.split_embeddings and "split token/position graph" in circuit.meta["definition"]
    _ok(at.switch_page("app_pages/circuit.py").run())
    assert "cannot be used here" not in _text(at), _text(at)


def test_prune_with_a_faithfulness_budget_plots_the_frontier(app_env):
    at = _ok(_app().run())
    assert not at.checkbox(key="prune.tiny.use_budget").value  # the default only for the embedded models
    _ok(at.checkbox(key="prune.tiny.use_budget").check().run())
    at.selectbox(key="prune.tiny.budget_kind").set_value("KL to the model, at most (nats)")  # random model: metric < 0
    at.number_input(key="prune.tiny.budget").set_value(0.8)
    at.number_input(key="prune.tiny.steps").set_value(6)
    at.number_input(key="prune.tiny.batch").set_value(8)
    _ok(at.button(key="prune.run").click().run())
    _wait_for_job(at, timeout=120)
    assert "Saved to the library" in _text(at), _text(at)
    saved = list(Path(app_env["CIRCUIT_LIBRARY"]).glob("*.safetensors"))
    assert len(saved) == 1 and "kl0.8" in saved[0].stem
    specs = [c.proto.spec for c in at.get("plotly_chart")]
    assert any("budget search explored" in s and "returned circuit" in s for s in specs)


def test_experiment_page_library_circuits_and_pruned_pair(app_env):
    """Two example circuits: graph, overlap vs chance, the cross-evaluation; then the same from two fresh runs."""
    at = _open("app_pages/experiment.py")
    assert at.selectbox(key="experiment.task_a").value == "boolean_instruction"
    assert at.selectbox(key="experiment.task_b").value == "boolean_fewshot"
    _ok(at.radio(key="experiment.source").set_value("Use circuits from the library").run())
    assert "boolean_instruction" in at.selectbox(key="experiment.circuit_a").value
    assert "boolean_fewshot" in at.selectbox(key="experiment.circuit_b").value
    text = _text(at)
    assert "expected by chance" in text and ("finding holds" in text or "does not hold" in text), text
    frame = at.dataframe[0].value
    assert list(frame.index) == ["A (boolean_instruction)", "B (boolean_fewshot)", "intersection", "full model"]
    assert frame.loc["full model", "boolean_instruction · accuracy"] >= 0
    labels = [m.label for m in at.metric]
    assert "Shared / expected by chance" in labels and "p-value (hypergeometric)" in labels
    _ok(at.selectbox(key="experiment.task_b").set_value("boolean_instruction").run())
    assert any("two different tasks" in w.value for w in at.warning)


def test_experiment_page_prunes_both_styles(app_env, monkeypatch):
    import engine
    from engine import budget_spec

    monkeypatch.setattr(budget_spec, "DEFAULT_SEARCH", budget_spec.BudgetConfig(
        engine.PruneConfig(n_steps=8, batch_size=8), refine_steps=4, max_refines=1))
    at = _open("app_pages/experiment.py")
    at.selectbox(key="experiment.tiny.budget_kind").set_value("KL to the model, at most (nats)")  # random model
    at.number_input(key="experiment.tiny.budget").set_value(0.5)
    _ok(at.button(key="experiment.run").click().run())
    job = at.session_state["app.kept"]["experiment.job"]
    job.wait(120)
    assert job.error is None and 2 * 8 <= len(job.steps) <= 2 * (8 + 4)  # a refine is skipped below 1 edge
    _ok(at.run())
    saved = sorted(p.stem for p in Path(app_env["CIRCUIT_LIBRARY"]).glob("*.safetensors"))
    assert len(saved) == 2 and "boolean_instruction" in saved[0] + saved[1], saved
    assert all(s.endswith("-kl0.5") for s in saved), saved   # the budget asked for, in the name
    a, b = job.result[0]
    assert at.metric[1].value == str(int((a.keep & b.keep).sum()))  # shared edges, counted independently
    assert at.dataframe[0].value.index[2] == "intersection"
