"""Learn works in a classroom: stages that reach their targets, a real schedule run, a model choice, predictions."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[2] / "app.py")
LEARN = "app_pages/learn.py"


def _ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    return at


def _open() -> AppTest:
    return _ok(_ok(AppTest.from_file(APP, default_timeout=120).run()).switch_page(LEARN).run())


def _button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def test_each_stage_reaches_its_target_and_the_graph_thins(app_env):
    at = _open()
    for _ in range(5):
        _ok(_button(at, "Next stage").click().run())
    table = at.dataframe[-1].value
    assert table["stage"].tolist() == [0, 1, 2, 3, 4, 5]
    for target, sparsity in zip(table["target"][1:], table["sparsity"][1:]):
        assert abs(sparsity - target) <= 0.1 * target, table
    assert table["edges"].is_monotonic_decreasing and table["edges"].nunique() == 6, table
    assert table["KL (test)"][1:].notna().all()
    assert table["accuracy (test)"].notna().all(), table   # stage 0 too: the full model's own (was None on screen)
    import engine
    from explorer import resources
    name, ref = next(iter(resources.model_choices().items()))   # the test env's one model drives the page
    model = engine.load_model(ref, device="cpu")
    task = engine.get_task(resources.default_task(name), model.tokenizer, n=resources.N_EXAMPLES, n_ctx=model.cfg.n_ctx)
    assert table["accuracy (test)"][0] == round(engine.evaluate(model, task, engine.Circuit.full(model.graph)).accuracy, 3)
    assert _button(at, "Next stage").disabled                       # the last stage is the end
    assert any("Stage 5 of 5" in c.value for c in at.caption)
    text = "\n".join(m.value for m in at.markdown)
    assert "survived" in text or "was pruned away" in text          # the prediction is answered from the run
    edges_stage2 = int(table["edges"][2])
    _ok(_button(at, "Open stage 2 in Circuit").click().run())
    assert at.title[0].value == "Circuit"
    assert at.metric[0].value == f"{edges_stage2:,}"


def test_the_schedule_demo_plots_a_real_run(app_env):
    at = _open()
    chart = lambda: next(c for c in at.get("plotly_chart") if "Sparsity schedule" in c.proto.spec)  # noqa: E731
    assert chart().proto.spec.count('"name":') == 1 or '"achieved"' not in chart().proto.spec
    at.slider(key="learn.steps").set_value(30)
    _ok(_button(at, "Run it on the model").click().run())
    assert '"achieved"' in chart().proto.spec
    assert any(c.value.startswith("After 30 steps the run's sparsity is") for c in at.caption)


def test_a_choice_of_model(app_env, monkeypatch):
    path = app_env["CIRCUIT_EXPLORER_MODELS"].split("=", 1)[1]
    monkeypatch.setenv("CIRCUIT_EXPLORER_MODELS", f"ioi-tiny={path};greater-tiny={path};boolean-tiny={path}")
    at = _open()
    radio = at.radio(key="learn.model")
    assert radio.options == ["IOI", "Greater-Than", "Boolean"]
    _ok(radio.set_value("Greater-Than").run())
    assert any("greater\\_than" in c.value or "greater_than" in c.value for c in at.caption)
