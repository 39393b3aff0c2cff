"""Boolean Expressions, instruction vs few-shot, on a Llama-family (GQA) model: prune each with the CLI,
intersect, and evaluate every circuit on both prompt styles through the API and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from engine import Circuit, evaluate_many, get_task, load_model
from engine.__main__ import main
from engine.tasks import sample_texts

transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")
STYLES = ("boolean_instruction", "boolean_fewshot")


@pytest.fixture(scope="module")
def llama_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny GQA Llama with a word-level tokenizer covering the Boolean prompts."""
    from scripts.word_tokenizer import PIECE, build_tokenizer, save_tokenizer
    from tokenizers import Regex, pre_tokenizers
    split = pre_tokenizers.Split(Regex(PIECE), behavior="isolated")
    texts = [t for name in STYLES for ex in sample_texts(name, 100, 0) for t in (ex.clean, ex.corrupt, ex.answer)]
    words = {p for t in texts + [" True", " False"] for p, _ in split.pre_tokenize_str(t)}
    tok = build_tokenizer(words)
    folder = tmp_path_factory.mktemp("bool_llama")
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, intermediate_size=64,
                                   num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                   max_position_embeddings=512)
    transformers.LlamaForCausalLM(cfg).save_pretrained(folder)
    save_tokenizer(tok, folder, model_max_length=512)
    return folder


@pytest.fixture(scope="module")
def circuits(llama_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = {}
    for style in STYLES:
        folder = tmp_path_factory.mktemp(style)
        argv = ["prune", "--model", str(llama_folder), "--device", "cpu", "--task", style, "--n", "32",
                "--steps", "6", "--batch-size", "8", "--edge-sparsity", "0.5", "--out", str(folder)]
        assert main(argv) == 0
        out[style] = folder / "circuit.safetensors"
    return out


def test_cli_evaluates_each_circuit_on_the_other_style(llama_folder: Path, circuits: dict[str, Path],
                                                        capsys: pytest.CaptureFixture) -> None:
    for trained, other in (STYLES, STYLES[::-1]):
        capsys.readouterr()
        argv = ["evaluate", "--model", str(llama_folder), "--device", "cpu", "--task", other, "--n", "32",
                "--circuit", str(circuits[trained]), "--json"]
        assert main(argv) == 0
        result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert result["n_edges"] == Circuit.load(circuits[trained]).n_edges and result["n_examples"] > 0


def test_api_intersection_and_cross_matrix(llama_folder: Path, circuits: dict[str, Path]) -> None:
    model = load_model(str(llama_folder), device="cpu")
    a, b = (Circuit.load(circuits[s]) for s in STYLES)
    assert a.meta["task"] == STYLES[0] and b.meta["task"] == STYLES[1]
    both = a & b
    assert both.n_edges == int((a.keep & b.keep).sum()) <= min(a.n_edges, b.n_edges)
    for style in STYLES:
        task = get_task(style, model.tokenizer, n=32, n_ctx=model.cfg.n_ctx)
        results = evaluate_many(model, task, [a, b, both], split="test")
        assert [r.n_edges for r in results] == [a.n_edges, b.n_edges, both.n_edges]
        assert all(torch.isfinite(torch.tensor(r.kl)) for r in results)
