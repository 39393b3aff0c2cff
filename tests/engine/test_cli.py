"""The command line: prune / evaluate / info on a local checkpoint with a tokenizer, and clear errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, save_gpt2

WORDS = ["<unk>", "when", "mary", "and", "john", "went", "to", "the", "store", "gave", "a", "drink", "bob", "alice"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A random GPT-2 with a word-level tokenizer, saved the way users' checkpoints are."""
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders
    from transformers import PreTrainedTokenizerFast
    path = save_gpt2(tmp_path_factory.mktemp("ckpt"), 2, 2, 16, vocab=len(WORDS), n_positions=32)
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>").save_pretrained(path)
    return path


def _jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def _run(*args: str):
    return subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)


def _pair(a: str, b: str) -> str:
    return json.dumps({"clean": f"when {a} and {b} went to the store {a} gave a drink to<predict> {b}</predict>",
                       "corrupted": f"when bob and alice went to the store {a} gave a drink to<predict> {b}</predict>"})


def test_prune_evaluate_info(checkpoint, tmp_path):
    data = _jsonl(tmp_path / "d.jsonl", [_pair("mary", "john"), _pair("john", "mary")] * 6)
    out = tmp_path / "run"
    r = _run("prune", "--model", str(checkpoint), "--data", str(data), "--out", str(out), "--steps", "20",
             "--batch-size", "4", "--edge-sparsity", "0.5", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert "edges kept" in r.stdout
    for name in ("circuit.safetensors", "edges.json", "circuit.json", "log.json", "checkpoint.safetensors"):
        assert (out / name).is_file()
    r = _run("evaluate", "--model", str(checkpoint), "--data", str(data), "--circuit",
             str(out / "circuit.safetensors"), "--edges", "10", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["n_edges"] == 10
    for spec in ("full", "empty"):
        r = _run("evaluate", "--model", str(checkpoint), "--data", str(data), "--circuit", spec, "--json")
        assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["n_edges"] == 0
    r = _run("info", "--model", str(checkpoint))
    assert r.returncode == 0 and "edges" in r.stdout


def test_bad_jsonl_reports_lines_without_traceback(checkpoint, tmp_path):
    data = _jsonl(tmp_path / "bad.jsonl", [_pair("mary", "john"), "{not json", json.dumps({"clean": "x"})])
    r = _run("prune", "--model", str(checkpoint), "--data", str(data), "--out", str(tmp_path / "o"), "--steps", "2")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "line 2" in r.stderr and "line 3" in r.stderr
    data = _jsonl(tmp_path / "misaligned.jsonl", [_pair("mary", "john")] * 2 + [
        json.dumps({"clean": "when mary<predict> john</predict>", "corrupted": "when mary and<predict> john</predict>"})])
    r = _run("evaluate", "--model", str(checkpoint), "--data", str(data), "--circuit", "full")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "line 3" in r.stderr and "different lengths" in r.stderr
    assert not (tmp_path / "o" / "circuit.safetensors").exists()


def test_missing_model_and_circuit_errors(checkpoint, tmp_path):
    r = _run("info", "--model", str(tmp_path / "nope"))
    assert r.returncode != 0 and "Traceback" not in r.stderr and "nope" in r.stderr
    data = _jsonl(tmp_path / "d.jsonl", [_pair("mary", "john")] * 3)
    bad = tmp_path / "bad.safetensors"
    bad.write_text("garbage")
    r = _run("evaluate", "--model", str(checkpoint), "--data", str(data), "--circuit", str(bad))
    assert r.returncode != 0 and "Traceback" not in r.stderr and "bad.safetensors" in r.stderr


def test_prune_with_eap_warm_start(checkpoint, tmp_path):
    data = _jsonl(tmp_path / "d.jsonl", [_pair("mary", "john"), _pair("john", "mary")] * 6)
    r = _run("prune", "--model", str(checkpoint), "--data", str(data), "--out", str(tmp_path / "w"), "--steps", "5",
             "--batch-size", "4", "--edge-sparsity", "0.5", "--init", "eap", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "w" / "circuit.json").read_text())["init"] == "eap"


def test_example_count_flag_passes_through_torchrun():
    """torchrun's parser takes `--n` as an abbreviation of its own options even after the module name;
    `--n-examples` (the same option) reaches the engine."""
    from torch.distributed.run import get_args_parser

    from engine.__main__ import parser
    tail = ["prune", "--model", "m", "--task", "ioi", "--out", "o", "--n-examples", "32"]
    ns = get_args_parser().parse_args(["--nproc-per-node", "2", "-m", "engine", *tail])
    assert ns.training_script == "engine" and ns.training_script_args == tail
    assert parser().parse_args(tail).n == 32
    assert parser().parse_args([*tail[:-2], "--n", "16"]).n == 16
    with pytest.raises(SystemExit):
        get_args_parser().parse_args(["-m", "engine", *tail[:-2], "--n", "16"])


def test_recipe_and_graph_flags(checkpoint, tmp_path, capsys):  # noqa: ANN001
    """--recipe authors runs PruneConfig.authors() on the split graph unless --graph says otherwise; --graph works
    on evaluate and info too."""
    from engine.__main__ import main
    from engine.graph import count_edges
    data = _jsonl(tmp_path / "d.jsonl", [_pair("mary", "john"), _pair("john", "mary")] * 6)
    base = ["--model", str(checkpoint), "--data", str(data), "--device", "cpu"]
    assert main(["prune", *base, "--out", str(tmp_path / "a"), "--recipe", "authors", "--steps", "4",
                 "--batch-size", "4", "--edge-sparsity", "0.5"]) == 0
    meta = json.loads((tmp_path / "a" / "circuit.json").read_text())
    cfg = json.loads(meta["prune_config"])
    assert (cfg["recipe"], cfg["lr_gates"], cfg["lr_lambdas"], cfg["n_steps"]) == ("authors", 0.8, 0.8, 4)
    assert json.loads(meta["model_config"])["split_embeddings"] and "split token/position" in meta["definition"]
    assert main(["prune", *base, "--out", str(tmp_path / "b"), "--recipe", "authors", "--graph", "input",
                 "--steps", "4", "--batch-size", "4"]) == 0
    assert "split_embeddings=True" in capsys.readouterr().err
    assert main(["prune", *base, "--out", str(tmp_path / "c"), "--steps", "4", "--graph", "split"]) == 0
    cfg = json.loads(json.loads((tmp_path / "c" / "circuit.json").read_text())["prune_config"])
    assert (cfg["recipe"], cfg["lr_gates"]) == ("default", 0.1)
    assert main(["evaluate", *base, "--graph", "split", "--circuit", str(tmp_path / "a" / "circuit.safetensors"),
                 "--json"]) == 0
    capsys.readouterr()
    assert main(["info", "--model", str(checkpoint), "--graph", "split"]) == 0
    assert f"{count_edges(2, 2, n_inputs=2)} edges" in capsys.readouterr().out
