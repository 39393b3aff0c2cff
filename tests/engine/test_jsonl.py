"""JSONL task files: every bad line reported with its number and reason; write -> read round trips."""

from __future__ import annotations

import json

import pytest

from engine.tasks.base import DataError, Example
from engine.tasks.jsonl import assign_splits, load_jsonl_task, read_jsonl, write_jsonl

GOOD = json.dumps({"clean": "When Mary and John went out, John gave it to<predict> Mary</predict>",
                   "corrupted": "When Alice and Bob went out, Carol gave it to<predict> Mary</predict>"})

BAD_LINES = {
    "invalid JSON": '{"clean": "x<predict>y</predict>", ',
    "expected a JSON object": '["clean", "corrupted"]',
    "missing key": json.dumps({"clean": "x<predict> y</predict>"}),
    "no <predict>": json.dumps({"clean": "x y", "corrupted": "x<predict> y</predict>"}),
    "2 <predict> spans": json.dumps({"clean": "x<predict> y</predict><predict> z</predict>",
                                     "corrupted": "x<predict> y</predict>"}),
    "text after </predict>": json.dumps({"clean": "x<predict> y</predict> z", "corrupted": "x<predict> y</predict>"}),
    "split 'dev'": json.dumps({"clean": "x<predict> y</predict>", "corrupted": "x<predict> y</predict>",
                               "split": "dev"}),
    "must be a string": json.dumps({"clean": 3, "corrupted": "x<predict> y</predict>"}),
    "empty answer": json.dumps({"clean": "x<predict></predict>", "corrupted": "x<predict> y</predict>"}),
    "list of non-empty strings": json.dumps({"clean": "x<predict> y</predict>", "corrupted": "x<predict> y</predict>",
                                             "bad": " z"}),
}


def test_every_bad_line_is_reported_with_its_number(tmp_path):
    lines = [GOOD]
    for bad in BAD_LINES.values():
        lines += [bad, GOOD]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as err:
        read_jsonl(path)
    problems = dict(err.value.problems)
    assert sorted(problems) == [2 * i + 2 for i in range(len(BAD_LINES))]
    for i, reason in enumerate(BAD_LINES):
        assert reason in problems[2 * i + 2], (reason, problems[2 * i + 2])
        assert f"line {2 * i + 2}: " in str(err.value)


def test_empty_file_and_undecodable_line_are_errors(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n  \n")
    with pytest.raises(DataError, match="no examples"):
        read_jsonl(empty)
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(GOOD.encode() + b"\n\xff\xfe\n")
    with pytest.raises(DataError, match="line 2: not valid UTF-8"):
        read_jsonl(binary)


def test_write_then_read_round_trips(tmp_path):
    examples = [Example("a b", "c b", " d", good=(" d", " e"), bad=(" f",), split="train"),
                Example("a b", "c b", " d", corrupt_answer=" g", split="test"),
                Example("ä ü", "ö ü", " ß", bad=(" x",))]
    path = tmp_path / "rt.jsonl"
    write_jsonl(examples, path)
    again = read_jsonl(path)
    assert [e.to_json() for e in again] == [e.to_json() for e in examples]
    assert again[1].corrupt_answer == " g" and again[0].good == (" d", " e")


def _line(clean: str, corrupt: str, answer: str, **extra) -> str:
    return json.dumps({"clean": f"{clean}<predict>{answer}</predict>",
                       "corrupted": f"{corrupt}<predict>{answer}</predict>", **extra})


def test_misaligned_and_too_long_lines_are_reported_by_line(tmp_path, gpt2_style_tokenizer):
    path = tmp_path / "align.jsonl"
    lines = [_line("Then, Mary and John went", "Then, Anna and Carl went", " home"),
             _line("Then, Mary and John went", "Then, Mary went", " home"),
             _line("Then, Mary and John went " * 20, "Then, Anna and Carl went " * 20, " home")]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as err:
        load_jsonl_task(path, gpt2_style_tokenizer, n_ctx=64)
    problems = dict(err.value.problems)
    assert sorted(problems) == [2, 3]
    assert "different lengths" in problems[2] and "at most 64" in problems[3]


def test_metric_and_small_files_use_every_line_everywhere(tmp_path, gpt2_style_tokenizer):
    path = tmp_path / "small.jsonl"
    path.write_text(_line("Then, Mary and John went", "Then, Anna and Carl went", " home") + "\n")
    task = load_jsonl_task(path, gpt2_style_tokenizer, n_ctx=64)
    assert task.metric == "accuracy" and task.name == "small"
    assert all(len(task.split(s)) == 1 for s in ("train", "validation", "test"))
    path.write_text(_line("Then, Mary and John went", "Then, Anna and Carl went", " home", bad=[" out"]) + "\n")
    assert load_jsonl_task(path, gpt2_style_tokenizer, n_ctx=64).metric == "logit_diff"


def test_unsplit_lines_are_divided_deterministically():
    examples = [Example(f"p{i}", f"q{i}", " a", split="test" if i == 0 else None) for i in range(41)]
    splits = assign_splits(examples)
    assert splits == assign_splits(examples)
    assert [len(splits[s]) for s in ("train", "validation", "test")] == [32, 4, 5]
    assert 0 in splits["test"] and len(set().union(*map(set, splits.values()))) == 41
