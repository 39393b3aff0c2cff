"""Shared fixtures: tiny random GPT-2 checkpoints saved with save_pretrained, a tiny task; slow/gpu markers."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.tasks.base import Example, Task, tokenize  # noqa: E402


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: long runs and real checkpoints (run with --runslow)")
    config.addinivalue_line("markers", "gpu: needs CUDA")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_slow = pytest.mark.skip(reason="slow: run with --runslow")
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "slow" in item.keywords and not config.getoption("--runslow"):
            item.add_marker(skip_slow)
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)


def save_gpt2(path: Path, n_layer: int = 2, n_head: int = 2, n_embd: int = 8, vocab: int = 32,
              n_positions: int = 16, seed: int = 0, random_biases: bool = False) -> Path:
    """A random GPT-2 checkpoint written with transformers' own save_pretrained.

    random_biases: biases and LayerNorm weights drawn at random (transformers starts them at 0 and 1, which
    hides a dropped or misplaced bias)."""
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(seed)
    cfg = GPT2Config(n_layer=n_layer, n_head=n_head, n_embd=n_embd, vocab_size=vocab, n_positions=n_positions,
                     bos_token_id=0, eos_token_id=0)
    hf = GPT2LMHeadModel(cfg).eval()
    if random_biases:
        with torch.no_grad():
            for name, p in hf.named_parameters():
                if name.endswith("bias") or ".ln_" in name:
                    p.normal_(1.0 if ".ln_" in name and name.endswith("weight") else 0.0, 0.3)
    hf.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_gpt2(tmp_path_factory.mktemp("tiny_gpt2"))


@pytest.fixture(scope="session")
def tiny_model(tiny_checkpoint: Path):
    from engine.weights import load_model
    return load_model(str(tiny_checkpoint), device="cpu")


class CharTokenizer:
    """One token per character of 'a'..'z' and space; enough for a tiny task."""

    alphabet = " abcdefghijklmnopqrstuvwxyz"

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [self.alphabet.index(c) for c in text]

    def decode(self, ids) -> str:  # noqa: ANN001
        return "".join(self.alphabet[i] for i in ids)


@pytest.fixture(scope="session")
def char_tokenizer() -> CharTokenizer:
    return CharTokenizer()


@pytest.fixture(scope="session")
def tiny_task(char_tokenizer: CharTokenizer) -> Task:
    """Copy-the-first-letter prompts; corrupted prompts change the first letter."""
    gen = torch.Generator().manual_seed(0)
    examples = []
    for _ in range(24):
        a, b, c, d = (chr(97 + int(x)) for x in torch.randint(0, 20, (4,), generator=gen))
        examples.append(Example(f"{a}{b}{c}{a}", f"{d}{b}{c}{d}", b, good=(b,), bad=(c,)))
    data, problems = tokenize(examples, char_tokenizer, n_ctx=16)
    assert not problems
    return Task("tiny", "logit_diff", {"train": data, "validation": data, "test": data})
