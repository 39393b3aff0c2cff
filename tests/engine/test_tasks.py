"""Built-in task generators: determinism, disjoint splits, aligned clean/corrupted tokens, any tokenizer."""

from __future__ import annotations

import random
import re

import pytest
import torch

from engine.tasks import TASKS, get_task, task_examples, write_task_jsonl
from engine.tasks.boolean import evaluate, flip_to_change, random_expression, running_values
from engine.tasks.jsonl import load_jsonl_task

TOKENIZERS = ["gpt2_style_tokenizer", "word_tokenizer", "llama_style_tokenizer"]


def _ids(tok, text: str) -> list[int]:
    return tok.encode(text, add_special_tokens=False)


def _usable(name: str, fixture: str) -> bool:
    # Llama-style tokenizers split digits one by one, so two-digit years cannot be compared as tokens.
    return not (name == "greater_than" and fixture == "llama_style_tokenizer")


@pytest.mark.parametrize("fixture", TOKENIZERS)
@pytest.mark.parametrize("name", sorted(TASKS))
def test_task_is_seeded_split_and_aligned(name, fixture, request):
    tok = request.getfixturevalue(fixture)
    if not _usable(name, fixture):
        pytest.skip("not expressible with this tokenizer (see test_greater_than_rejects_digit_tokenizers)")
    task = get_task(name, tok, n=16, seed=0)
    again = get_task(name, tok, n=16, seed=0)
    assert task.metric == TASKS[name].metric
    assert {s: len(d) for s, d in task.splits.items()} == {"train": 16, "validation": 4, "test": 4}
    for split, data in task.splits.items():
        assert torch.equal(data.clean, again.splits[split].clean)
        assert torch.equal(data.corrupt, again.splits[split].corrupt)
        for ex in data.examples:
            assert len(_ids(tok, ex.clean)) == len(_ids(tok, ex.corrupt))
            good = {_ids(tok, g)[0] for g in ex.good}
            assert good.isdisjoint({_ids(tok, b)[0] for b in ex.bad})
        assert bool((data.clean != data.corrupt).any(dim=1).all()), "every corrupted prompt differs"
    prompts = [{ex.clean for ex in d.examples} for d in task.splits.values()]
    assert all(not (a & b) for i, a in enumerate(prompts) for b in prompts[i + 1:]), "splits overlap"
    other = get_task(name, tok, n=16, seed=1)
    assert not torch.equal(other.splits["train"].clean, task.splits["train"].clean)


def test_unknown_task_lists_valid_names(gpt2_style_tokenizer):
    with pytest.raises(KeyError, match="boolean_fewshot"):
        get_task("ioi_typo", gpt2_style_tokenizer)


def test_greater_than_rejects_digit_tokenizers(llama_style_tokenizer):
    with pytest.raises(ValueError, match="first token"):
        get_task("greater_than", llama_style_tokenizer, n=4)


def test_ioi_prompts_repeat_the_subject_and_corrupt_with_three_names(word_tokenizer):
    for ex in task_examples("ioi", word_tokenizer, n=20, seed=3):
        io, s = ex.good[0].strip(), ex.bad[0].strip()
        words = re.findall(r"[A-Za-z]+", ex.clean)
        assert words.count(io) == 1 and words.count(s) == 2 and ex.answer == f" {io}"
        assert io not in ex.corrupt and s not in ex.corrupt


def test_greater_than_good_years_follow_the_start(word_tokenizer):
    for ex in task_examples("greater_than", word_tokenizer, n=20, seed=0):
        start = int(ex.clean.split()[-3][2:])
        assert ex.good == tuple(f"{y:02d}" for y in range(start + 1, 100))
        assert ex.bad == tuple(f"{y:02d}" for y in range(start + 1)) and ex.answer in ex.good
        assert ex.corrupt.split()[-3][2:] == "01"


def test_pronoun_corruption_swaps_gender(word_tokenizer):
    for ex in task_examples("gendered_pronoun", word_tokenizer, n=20, seed=0):
        assert {ex.good[0], ex.bad[0]} == {" he", " she"} and ex.corrupt_answer == ex.bad[0]


def test_boolean_styles_share_their_queries(word_tokenizer):
    inst = task_examples("boolean_instruction", word_tokenizer, n=12, seed=5)
    few = task_examples("boolean_fewshot", word_tokenizer, n=12, seed=5)
    assert [e.clean.split(" : ")[-1] for e in inst] == [e.clean.split(" . ")[-1] for e in few]
    for ex in few:
        query = ex.clean.split(" . ")[-1].split()[:-1]
        flipped = ex.corrupt.split(" . ")[-1].split()[:-1]
        assert ex.answer == f" {evaluate(query)}" and evaluate(flipped) != evaluate(query)
        assert 3 <= sum(w in ("True", "False") for w in query) <= 6


def _depth(words: list[str]) -> int:
    depth = best = 0
    for w in words:
        depth += (w == "(") - (w == ")")
        best = max(best, depth)
    return best


def test_boolean_evaluator_matches_python():
    rng = random.Random(0)
    for _ in range(300):
        words = random_expression(rng, rng.randint(3, 6), 3)
        assert evaluate(words) == eval(" ".join(words))  # noqa: S307 - our own True/False/and/or/not text
        assert _depth(words) <= 3
        values = running_values(words)
        assert values[-1] == evaluate(words) and len(values) == len(words)
        flipped = flip_to_change(rng, words)
        assert flipped is None or evaluate(flipped) != evaluate(words)


def test_any_task_round_trips_through_jsonl(tmp_path, gpt2_style_tokenizer):
    path = tmp_path / "ioi.jsonl"
    assert write_task_jsonl("ioi", gpt2_style_tokenizer, path, n=8, seed=0) == 12
    loaded = load_jsonl_task(path, gpt2_style_tokenizer, n_ctx=1024)
    builtin = get_task("ioi", gpt2_style_tokenizer, n=8, seed=0)
    assert loaded.metric == "logit_diff"
    for split, data in builtin.splits.items():
        assert torch.equal(loaded.splits[split].clean, data.clean)
        assert torch.equal(loaded.splits[split].good, data.good)
        assert torch.equal(loaded.splits[split].bad, data.bad)
