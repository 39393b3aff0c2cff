"""Build the embedded models' word-level tokenizer from the built-in task generators."""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

from engine.tasks import TASKS, sample_texts
from engine.tasks.sampling import load_data

# One token per word, number pair or punctuation mark, with its leading space (as GPT-2 does):
# " Mary", " 17" + "43" for " 1743", "," and " (".
PIECE = r" ?[A-Za-z]+| ?[0-9]{1,2}| ?[^\sA-Za-z0-9]|\s+"
SPECIALS = ("<|endoftext|>", "[UNK]")  # <|endoftext|> is bos, eos and pad, as in GPT-2


def corpus_words(n_per_task: int = 3000, seed: int = 0) -> set[str]:
    """Every piece the task generators can produce (their word lists are covered exhaustively)."""
    pre = pre_tokenizers.Split(Regex(PIECE), behavior="isolated")
    texts: list[str] = []
    for name in TASKS:
        for ex in sample_texts(name, n_per_task, seed):
            texts += [ex.clean, ex.corrupt, ex.answer, *(ex.corrupt_answer or "",), *ex.good, *ex.bad]
    names = load_data("names")
    texts += [n for n in names["male"] + names["female"]] + [f" {y:02d}" for y in range(100)]
    texts += [f"{y:02d}" for y in range(100)] + [" True", " False", "True", "False"]
    return {piece for text in texts for piece, _ in pre.pre_tokenize_str(text)}


def build_tokenizer(words: set[str]) -> Tokenizer:
    """A WordLevel tokenizer over `words` (sorted, so ids are deterministic) plus the special tokens."""
    vocab = {tok: i for i, tok in enumerate([*SPECIALS, *sorted(words)])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(PIECE), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return tok


def save_tokenizer(tok: Tokenizer, out_dir: str | Path, model_max_length: int) -> None:
    """Save as tokenizer.json + tokenizer_config.json, loadable by transformers.AutoTokenizer."""
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                   pad_token="<|endoftext|>", unk_token="[UNK]", model_max_length=model_max_length,
                                   clean_up_tokenization_spaces=False)
    fast.save_pretrained(str(out_dir))
    config = Path(out_dir) / "tokenizer_config.json"
    cfg = json.loads(config.read_text())
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"  # the name transformers 4.x knows too (5.x aliases it)
    config.write_text(json.dumps(cfg, indent=2) + "\n")
