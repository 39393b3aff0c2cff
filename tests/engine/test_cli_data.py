"""Data never costs a run: what could fail after `prune` fails before its first step, a failure at the end
leaves the circuit saved and says where, and odd files (binary, empty, BOM + CRLF) get one clear message."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
import torch

import engine.__main__ as cli
from engine import Circuit
from tests.engine.test_cli import _jsonl, _pair, checkpoint  # noqa: F401 - the module's checkpoint fixture

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _keep_threads():  # noqa: ANN202 - the CLI tunes torch's thread count; give it back
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _prune(checkpoint: Path, data: Path, out: Path, *extra: str) -> list[str]:  # noqa: F811
    return ["prune", "--model", str(checkpoint), "--data", str(data), "--out", str(out), "--steps", "3",
            "--batch-size", "4", "--device", "cpu", *extra]


def _split(line: str, split: str) -> str:
    return line[:-1] + f', "split": "{split}"}}'


def test_train_and_test_only_runs_with_validation_from_train(checkpoint, tmp_path, capsys) -> None:  # noqa: F811
    lines = [_split(_pair(a, b), "train") for a, b in [("mary", "john"), ("john", "mary")] * 6]
    data = _jsonl(tmp_path / "d.jsonl", lines + [_split(_pair("mary", "john"), "test")])
    assert cli.main(_prune(checkpoint, data, tmp_path / "run")) == 0
    err = capsys.readouterr().err
    assert "note: no validation lines: 1 of the 12 train lines became the validation split" in err
    assert Circuit.load(tmp_path / "run" / "circuit.safetensors").meta.get("metrics")


def test_checks_that_would_fail_after_the_run_fail_before_it(checkpoint, tmp_path, capsys) -> None:  # noqa: F811
    only_test = _jsonl(tmp_path / "t.jsonl", [_split(_pair("mary", "john"), "test")] * 3)
    assert cli.main(_prune(checkpoint, only_test, tmp_path / "a")) == 2
    assert "has no 'train' examples" in capsys.readouterr().err
    assert not (tmp_path / "a" / "log.json").exists() and not (tmp_path / "a" / "checkpoint.safetensors").exists()
    good = _jsonl(tmp_path / "g.jsonl", [_pair("mary", "john")] * 4)
    (tmp_path / "file").write_text("a file, not a folder")
    assert cli.main(_prune(checkpoint, good, tmp_path / "file" / "run")) == 2
    assert "cannot write to the output folder" in capsys.readouterr().err


def test_a_failure_at_the_end_keeps_the_circuit_and_says_where(checkpoint, tmp_path, capsys,  # noqa: F811
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_a, **_k):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError("out of memory (simulated)")

    monkeypatch.setattr(cli, "evaluate", broken)
    good = _jsonl(tmp_path / "g.jsonl", [_pair("mary", "john"), _pair("john", "mary")] * 3)
    out = tmp_path / "run"
    assert cli.main(_prune(checkpoint, good, out)) == 2
    err = capsys.readouterr().err
    assert "out of memory (simulated)" in err and str(out / "circuit.safetensors") in err
    saved = Circuit.load(out / "circuit.safetensors")
    assert saved.graph.n_edges > 0 and (out / "edges.json").is_file() and (out / "log.json").is_file()


@pytest.mark.parametrize("kind", ["binary", "empty", "bom-crlf"])
def test_odd_files_from_the_command_line(checkpoint, tmp_path, capsys, kind: str) -> None:  # noqa: F811
    path = tmp_path / "d.jsonl"
    if kind == "binary":
        path.write_bytes(random.Random(1).randbytes(20 * 2**20))
    elif kind == "empty":
        path.write_bytes(b"")
    else:
        path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join([_pair("mary", "john")] * 3).encode() + b"\r\n")
    code = cli.main(["evaluate", "--model", str(checkpoint), "--data", str(path), "--circuit", "full",
                     "--device", "cpu", "--json"])
    err = capsys.readouterr().err
    if kind == "bom-crlf":
        assert code == 0, err
        return
    assert code == 2 and err.count("\n") == 1 and not re.search(r"line \d", err)   # one message, no line numbers
    assert ("not a UTF-8 text file" if kind == "binary" else "no examples: it is empty") in err


def test_a_validation_problem_stops_the_run_before_its_first_step(tmp_path, capsys) -> None:
    """A tokenizer with more words than the model's vocabulary (ids 10..13 unknown to a 10-token model): only the
    validation lines use them, so a run would train, then fail evaluating; the check stops it first."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from tests.conftest import save_gpt2
    from tests.engine.test_cli import WORDS
    folder = save_gpt2(tmp_path / "small_vocab", 2, 2, 16, vocab=10, n_positions=32)
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>").save_pretrained(folder)

    def line(a: str, split: str) -> str:
        return (f'{{"clean": "when {a} and john went to the store<predict> mary</predict>", '
                f'"corrupted": "when john and {a} went to the store<predict> mary</predict>", "split": "{split}"}}')

    data = _jsonl(tmp_path / "d.jsonl", [line("mary", "train")] * 4 + [line("bob", "validation"),
                                                                        line("mary", "test")])
    out = tmp_path / "run"
    assert cli.main(_prune(folder, data, out)) == 2
    err = capsys.readouterr().err
    assert "(validation): token id 12 is outside the model's vocabulary of 10" in err, err
    assert not (out / "log.json").exists() and not (out / "checkpoint.safetensors").exists()
