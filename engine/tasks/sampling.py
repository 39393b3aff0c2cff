"""Seeded sampling of position-aligned examples from a text generator, for any tokenizer."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from engine.tasks.base import Example, Tokenizer

DATA_DIR = Path(__file__).parent / "data"

GIVE_UP = 100  # draws after which a tokenizer that has aligned no example at all is given up on

Sampler = Callable[[random.Random], Example]
"""Draws one clean/corrupted example (text only) from a seeded random generator."""


@lru_cache(maxsize=None)
def load_data(name: str) -> dict[str, Any]:
    """The JSON file `engine/tasks/data/<name>.json` (names, templates, word lists)."""
    return json.loads((DATA_DIR / f"{name}.json").read_text())


def fill(template: str, slots: dict[str, str]) -> str:
    """Replace every `[KEY]` in `template` by `slots[KEY]`."""
    for key, value in slots.items():
        template = template.replace(f"[{key}]", value)
    return template


def alignment_problem(example: Example, tokenizer: Tokenizer, cache: dict[str, list[int]] | None = None) -> str | None:
    """Why `example` cannot be used with `tokenizer` (None if it can).

    Clean and corrupted prompts must tokenize to the same length, and the first tokens of the
    good and bad completions must be disjoint (else the metric compares a token with itself).
    `cache` memoizes the tokenization of completions, which repeat across examples.
    """
    cache = {} if cache is None else cache

    def first(text: str) -> list[int]:
        if text not in cache:
            cache[text] = list(tokenizer.encode(text, add_special_tokens=False))[:1]
        return cache[text]

    if len(tokenizer.encode(example.clean, add_special_tokens=False)) != \
            len(tokenizer.encode(example.corrupt, add_special_tokens=False)):
        return "clean and corrupted prompts tokenize to different lengths"
    good = [first(g) for g in (example.good or (example.answer,))]
    bad = [first(b) for b in example.bad]
    if any(not t for t in good + bad):
        return "a good/bad completion tokenizes to nothing"
    if {t[0] for t in good} & {t[0] for t in bad}:
        return "good and bad completions share their first token"
    return None


def sample_examples(sampler: Sampler, tokenizer: Tokenizer, n: int, seed: int,
                    max_tries: int | None = None) -> list[Example]:
    """`n` distinct (by clean prompt) examples that align under `tokenizer`, deterministic in `seed`.

    Misaligned draws are discarded and redrawn, never kept.

    Raises:
        ValueError: when fewer than `n` usable examples turn up in `max_tries` draws.
    """
    rng = random.Random(seed)
    max_tries = max_tries if max_tries is not None else 50 * n + 200
    out: list[Example] = []
    seen: set[str] = set()
    reasons: dict[str, int] = {}
    cache: dict[str, list[int]] = {}
    draws = 0
    while len(out) < n and draws < max_tries and (out or draws < GIVE_UP):
        ex, draws = sampler(rng), draws + 1
        if ex.clean in seen:
            continue
        problem = alignment_problem(ex, tokenizer, cache)
        if problem is not None:
            reasons[problem] = reasons.get(problem, 0) + 1
            continue
        seen.add(ex.clean)
        out.append(ex)
    if len(out) < n:
        why = "; ".join(f"{r} ({c}x)" for r, c in sorted(reasons.items(), key=lambda kv: -kv[1]))
        raise ValueError(f"could only make {len(out)} of {n} usable examples in {draws} draws with this "
                         f"tokenizer: {why or 'too few distinct prompts'}")
    return out
