"""Prompt lab tells the truth about each prompt: its tokens, unknown words, misaligned twins, n, logit differences."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[2] / "app.py")
LINES = ("When Zorblax and Mary went to the spaceport , John gave a drink to | "
         "When Zorblax and Anna went to the spaceport , John gave a drink to | Mary\n"
         "Then , Mary and John went to the store | Then , Anna went to the store\n"
         "When Mary and John went to the store , John gave a drink to\n"
         "When Mary and John went to the store , Mary gave a drink to | "
         "When Anna and Paul went to the store , Mary gave a drink to | John")


def _ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture()
def lab(app_env) -> AppTest:
    at = _ok(_ok(AppTest.from_file(APP, default_timeout=60).run()).switch_page("app_pages/prompts.py").run())
    at.text_area(key="prompts.text").set_value(LINES)
    return _ok(at.run())


def test_unknown_words_and_misaligned_twins_are_named(lab):
    warnings = "\n".join(w.value for w in lab.warning)
    assert "Zorblax" in warnings and "spaceport" in warnings, warnings
    line2 = [w.value for w in lab.warning if w.value.startswith("Line 2")]
    assert any("does not align with the prompt at position(s) 2 (' Mary'), 3 (' and'), 4 (' John')" in w for w in line2), line2
    tokens = lab.dataframe[1].value   # the first prompt's tokens (a row per kind, a column per position)
    assert "unknown word" in tokens.loc[""].tolist()


def test_accuracy_cards_state_their_n(lab):
    captions = [c.value for c in lab.caption]
    assert any(c.startswith("2 of 4 line(s) have an expected answer") for c in captions), captions
    lab.text_area(key="prompts.text").set_value(LINES.splitlines()[0])
    _ok(lab.run())
    assert any(c.startswith("1 of 1 line(s) has an expected answer") for c in (c.value for c in lab.caption))


def test_a_borrowed_twin_says_which_and_why(app_env):
    at = _ok(_ok(AppTest.from_file(APP, default_timeout=60).run()).switch_page("app_pages/prompts.py").run())
    example = at.text_area(key="prompts.text").value.splitlines()[0]   # a task example: clean | corrupted | answer
    at.text_area(key="prompts.text").set_value(example.split("|")[0])
    _ok(at.run())
    source = at.dataframe[0].value["corrupted from"].tolist()[0]
    assert "test example 1" in source and "borrowed because this line gives no twin" in source, source
    assert any(c.value.startswith("Corrupted twin: task") for c in at.caption)


def test_logit_differences_match_transformers(app_env):
    """Full circuit = the model: both logit differences equal transformers'; empty circuit = the twin's run."""
    from transformers import GPT2LMHeadModel

    import engine
    from explorer import prompts

    folder = app_env["CIRCUIT_EXPLORER_MODELS"].split("=", 1)[1]
    model = engine.load_model(folder, device="cpu")
    hf = GPT2LMHeadModel.from_pretrained(folder).eval()
    row = prompts.parse(LINES.splitlines()[3])[0]
    tok = model.tokenizer
    clean = tok.encode(row.clean, add_special_tokens=False)
    twin = tok.encode(row.corrupt, add_special_tokens=False)
    with torch.no_grad():
        ref_clean = hf(torch.tensor([clean])).logits[0, -1]
        ref_twin = hf(torch.tensor([twin])).logits[0, -1]
    e = tok.encode(" John", add_special_tokens=False)[0]
    for circuit, ref in ((engine.Circuit.full(model.graph), ref_clean),
                         (engine.Circuit.full(model.graph).top_n(0), ref_twin)):
        (p,) = prompts.predict_rows(model, circuit, [row], None)
        o = tok.convert_tokens_to_ids(tok.tokenize(p.diff.contrast))[0]
        assert p.diff.full == pytest.approx(float(ref_clean[e] - ref_clean[o]), abs=1e-4)
        assert p.diff.circuit == pytest.approx(float(ref[e] - ref[o]), abs=1e-4)
        assert o != e


def test_user_text_is_escaped_in_labels(app_env):
    from explorer.text import literal

    at = _ok(_ok(AppTest.from_file(APP, default_timeout=60).run()).switch_page("app_pages/prompts.py").run())
    nasty = "**John** [x](https://example.com) :red[x] <b>x</b> Mary"
    at.text_area(key="prompts.text").set_value(nasty)
    _ok(at.run())
    assert at.expander[0].label == f"1. {literal(nasty)}"
    assert "**John**" not in at.expander[0].label
