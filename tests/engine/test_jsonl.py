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
    for content in (b"", b"\n  \n", b"\xef\xbb\xbf\r\n"):
        empty.write_bytes(content)
        with pytest.raises(DataError, match="no examples: it is empty") as err:
            read_jsonl(empty)
        assert "line 0" not in str(err.value) and err.value.items() == [err.value.problems[0][1]]
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


def test_byte_order_mark_and_crlf_are_accepted(tmp_path, gpt2_style_tokenizer):
    lines = [_line("Then, Mary and John went", "Then, Anna and Carl went", " home", split=split)
             for split in ("train", "validation", "test")]
    path = tmp_path / "windows.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n")
    task = load_jsonl_task(path, gpt2_style_tokenizer, n_ctx=64)
    assert [len(task.split(s)) for s in ("train", "validation", "test")] == [1, 1, 1]
    assert task.split("train").examples[0].answer == " home"


def test_a_binary_file_is_one_message(tmp_path):
    """20 MB of random bytes: one problem naming the file as not text, not thousands of line errors."""
    import random
    path = tmp_path / "model.bin"
    path.write_bytes(random.Random(0).randbytes(20 * 2**20))
    with pytest.raises(DataError) as err:
        read_jsonl(path)
    assert len(err.value.problems) == 1 and "not a UTF-8 text file" in str(err.value)
    assert "line" not in err.value.items()[0].split("(")[0]


def test_train_and_test_only_takes_validation_from_train(tmp_path, gpt2_style_tokenizer):
    names = ["Mary", "Anna", "John", "Carl", "Paul", "Emma", "Lisa", "Mark", "Adam", "Rose", "Jack", "Kate"]
    lines = [_line(f"Then, {a} and {b} went", f"Then, {b} and {a} went", " home", split="train")
             for a in names for b in names[:2] if a != b][:20]
    lines += [_line("Then, Mary and John went", "Then, Anna and Carl went", " home", split="test")]
    path = tmp_path / "no_validation.jsonl"
    path.write_text("\n".join(lines) + "\n")
    task = load_jsonl_task(path, gpt2_style_tokenizer, n_ctx=64)
    train, val = task.split("train"), task.split("validation")
    assert (len(train), len(val), len(task.split("test"))) == (18, 2, 1)
    assert not {e.clean for e in train.examples} & {e.clean for e in val.examples}   # taken out of train
    assert task.meta["splits_note"] == "no validation lines: 2 of the 20 train lines became the validation split"
    path.write_text("\n".join(lines[:3] + lines[-1:]) + "\n")   # few train lines: shared, and said so
    task = load_jsonl_task(path, gpt2_style_tokenizer, n_ctx=64)
    assert len(task.split("validation")) == 3 and "uses the 3 train line(s) too" in task.meta["splits_note"]
