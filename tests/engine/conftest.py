"""Fixtures for the engine tests: tokenizers (GPT-2-style BPE, Llama-style Metaspace BPE, our word-level one), one-thread mode."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from engine.tasks.base import Example, Task, tokenize

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "assets" / "models"


def _corpus() -> list[str]:
    from engine.tasks import TASKS, sample_texts

    texts = []
    for name in TASKS:
        for ex in sample_texts(name, 200, seed=1):
            texts += [ex.clean + ex.answer, ex.corrupt + (ex.corrupt_answer or ex.answer), *ex.good, *ex.bad]
    return texts


def _train(pre_tokenizer, decoder, vocab_size: int):
    """A small BPE trained offline on the generators' own text, wrapped as a transformers tokenizer."""
    from tokenizers import Tokenizer, models, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer, tok.decoder = pre_tokenizer, decoder
    tok.train_from_iterator(_corpus(), trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<unk>", "<s>"],
                                                           show_progress=False))
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>")


@pytest.fixture(scope="session")
def gpt2_style_tokenizer():
    """Byte-level BPE with GPT-2's pre-tokenizer (the real vocabulary needs the network)."""
    from tokenizers import decoders, pre_tokenizers

    return _train(pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel(), 1200)


@pytest.fixture(scope="session")
def llama_style_tokenizer():
    """Sentencepiece-style BPE (Metaspace, digits split one by one), as Llama tokenizers do."""
    from tokenizers import decoders, pre_tokenizers

    pre = pre_tokenizers.Sequence([pre_tokenizers.Metaspace(), pre_tokenizers.Digits(individual_digits=True)])
    return _train(pre, decoders.Metaspace(), 1200)


@pytest.fixture(scope="session")
def word_tokenizer():
    """The embedded models' word-level tokenizer, loaded as transformers loads it."""
    from transformers import AutoTokenizer

    path = MODELS / "ioi-2l"
    if not (path / "tokenizer.json").exists():
        pytest.skip(f"no embedded tokenizer at {path}")
    return AutoTokenizer.from_pretrained(str(path))


@pytest.fixture(scope="module")
def one_thread():  # noqa: ANN201
    """Two shared cores: intra-op threads only add contention at small sizes (use via pytestmark)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def echo_task(char_tokenizer) -> Task:  # noqa: ANN001
    """A task the random tiny model does: the answer is the last letter, which its tied embedding and unembedding
    favour; the corruption changes that letter. (On tiny_task the random model is at chance: f is n/a there.)"""
    gen = torch.Generator().manual_seed(0)
    examples = []
    for _ in range(24):
        a, b, c, d = (chr(97 + int(x)) for x in torch.randperm(20, generator=gen)[:4])
        examples.append(Example(f"{b}{c}{a}", f"{b}{c}{d}", a, good=(a,), bad=(d,)))
    data, problems = tokenize(examples, char_tokenizer, n_ctx=16)
    assert not problems
    return Task("echo", "logit_diff", {"train": data, "validation": data, "test": data})
