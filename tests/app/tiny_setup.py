"""A tiny random GPT-2 with the embedded models' word tokenizer, plus example circuits, for app tests.

`python tests/app/tiny_setup.py DIR` writes it and prints the environment variables that point the app at it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]


def make_model(folder: Path, n_ctx: int = 160) -> Path:
    sys.path.insert(0, str(ROOT / "scripts"))
    from transformers import GPT2Config, GPT2LMHeadModel
    from word_tokenizer import build_tokenizer, corpus_words, save_tokenizer

    save_tokenizer(build_tokenizer(corpus_words(40)), folder, n_ctx)
    from transformers import AutoTokenizer
    vocab = len(AutoTokenizer.from_pretrained(str(folder)))
    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=2, n_head=2, n_embd=16, vocab_size=vocab, n_positions=n_ctx, bos_token_id=0,
                     eos_token_id=0)
    GPT2LMHeadModel(cfg).eval().save_pretrained(str(folder))
    return folder


def make_examples(model_ref: str | Path, folder: Path, model_name: str = "tiny") -> None:
    """Two example circuits of a model (instruction vs few-shot style names), random scores."""
    from engine import Circuit, load_model

    folder.mkdir(parents=True, exist_ok=True)
    model = load_model(str(model_ref), device="cpu")
    g = model.graph
    for i, (name, task) in enumerate([("boolean-instruction", "boolean_instruction"),
                                      ("boolean-fewshot", "boolean_fewshot")]):
        gen = torch.Generator().manual_seed(i)
        scores = torch.rand(g.n_src, g.n_dst, generator=gen) * g.real_edges
        meta = {"model": model_name, "config_hash": model.cfg.hash(), "task": task, "method": "random", "name": name}
        Circuit(g, scores, torch.zeros_like(g.real_edges), meta=meta).top_n(g.n_edges // 4).save(folder / f"{name}.safetensors")


def make_env(root: Path) -> dict[str, str]:
    root = Path(root)
    model_dir = make_model(root / "tiny")
    (root / "examples").mkdir(parents=True, exist_ok=True)
    make_examples(model_dir, root / "examples")
    return {"CIRCUIT_EXPLORER_MODELS": f"tiny={model_dir}", "CIRCUIT_LIBRARY": str(root / "library"),
            "CIRCUIT_EXAMPLES": str(root / "examples")}


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    for k, v in make_env(Path(sys.argv[1])).items():
        print(f"export {k}={v}")
