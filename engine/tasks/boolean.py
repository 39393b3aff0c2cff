"""Boolean expression prompts (BIG-Bench `boolean_expressions` style) in instruction and few-shot form."""

from __future__ import annotations

import random
from collections.abc import Sequence

from engine.tasks.base import Example
from engine.tasks.sampling import fill, load_data

LITERALS = ("True", "False")
P_NOT = 0.25  # chance that an operand is negated


def random_expression(rng: random.Random, n_literals: int, max_depth: int) -> list[str]:
    """A random expression as words, e.g. ["not", "(", "True", "or", "False", ")", "and", "True"].

    Args:
        n_literals: how many True/False literals it contains.
        max_depth: the deepest parenthesis nesting allowed.
    """
    if n_literals == 1:
        return _negated(rng, [rng.choice(LITERALS)])
    n_operands = n_literals if max_depth == 0 else rng.randint(2, n_literals)
    cuts = sorted(rng.sample(range(1, n_literals), n_operands - 1))
    sizes = [b - a for a, b in zip([0, *cuts], [*cuts, n_literals])]
    words: list[str] = []
    for i, size in enumerate(sizes):
        if i:
            words.append(rng.choice(("and", "or")))
        if size == 1:
            words += _negated(rng, [rng.choice(LITERALS)])
        else:
            words += _negated(rng, ["(", *random_expression(rng, size, max_depth - 1), ")"])
    return words


def _negated(rng: random.Random, operand: list[str]) -> list[str]:
    return ["not", *operand] if rng.random() < P_NOT else operand


def evaluate(words: Sequence[str]) -> bool:
    """The value of an expression under Python's precedence (not > and > or)."""
    value, end = _or(list(words), 0)
    if end != len(words):
        raise ValueError(f"unexpected {words[end]!r} at word {end} of {' '.join(words)!r}")
    return value


def _or(w: list[str], i: int) -> tuple[bool, int]:
    value, i = _and(w, i)
    while i < len(w) and w[i] == "or":
        right, i = _and(w, i + 1)
        value = value or right
    return value, i


def _and(w: list[str], i: int) -> tuple[bool, int]:
    value, i = _not(w, i)
    while i < len(w) and w[i] == "and":
        right, i = _not(w, i + 1)
        value = value and right
    return value, i


def _not(w: list[str], i: int) -> tuple[bool, int]:
    if i < len(w) and w[i] == "not":
        value, i = _not(w, i + 1)
        return not value, i
    if i < len(w) and w[i] == "(":
        value, i = _or(w, i + 1)
        if i >= len(w) or w[i] != ")":
            raise ValueError(f"unclosed parenthesis in {' '.join(w)!r}")
        return value, i + 1
    if i < len(w) and w[i] in LITERALS:
        return w[i] == "True", i + 1
    raise ValueError(f"expected a literal at word {i} of {' '.join(w)!r}")


def running_values(words: Sequence[str]) -> list[bool | None]:
    """Per word: after a literal or ")", the value of the expression read so far (open groups closed); else None."""
    out: list[bool | None] = []
    depth = 0
    for i, word in enumerate(words):
        depth += (word == "(") - (word == ")")
        out.append(evaluate([*words[: i + 1], *[")"] * depth]) if word in (*LITERALS, ")") else None)
    return out


def flip_to_change(rng: random.Random, words: Sequence[str], tries: int = 64) -> list[str] | None:
    """`words` with some literals flipped so that the value changes (single flips first); None if none found."""
    target = not evaluate(words)
    spots = [i for i, w in enumerate(words) if w in LITERALS]
    candidates = [[i] for i in rng.sample(spots, len(spots))]
    candidates += [rng.sample(spots, rng.randint(2, len(spots))) for _ in range(tries) if len(spots) > 1]
    for flips in candidates:
        out = list(words)
        for i in flips:
            out[i] = "False" if out[i] == "True" else "True"
        if evaluate(out) == target:
            return out
    return None


def sample_expression(rng: random.Random, answer: bool, n_literals: tuple[int, int] | None = None,
                      max_depth: int | None = None) -> list[str]:
    """A random expression whose value is `answer` (lengths and depth default to data/boolean.json)."""
    cfg = load_data("boolean")
    lo, hi = n_literals or cfg["n_literals"]
    depth = cfg["max_depth"] if max_depth is None else max_depth
    while True:
        words = random_expression(rng, rng.randint(lo, hi), depth)
        if evaluate(words) == answer:
            return words


def format_prompt(style: str, words: Sequence[str], demos: Sequence[Sequence[str]] = ()) -> str:
    """The prompt for `words`: "instruction" = instruction sentence + question, "fewshot" = worked demos + question."""
    cfg = load_data("boolean")
    question = fill(cfg["question"], {"EXPR": " ".join(words)})
    if style == "instruction":
        return f"{cfg['instruction']} {question}"
    if style == "fewshot":
        shots = [fill(cfg["demo"], {"EXPR": " ".join(d), "ANSWER": str(evaluate(d))}) for d in demos]
        return " ".join([*shots, question])
    raise ValueError(f"unknown prompt style {style!r}; choose from ['fewshot', 'instruction']")


def sample_boolean(rng: random.Random, style: str, n_demos: int | None = None) -> Example:
    """One example; both styles draw the same random numbers, so a seed gives the same queries in each."""
    k = load_data("boolean")["n_demos"] if n_demos is None else n_demos
    answer = rng.random() < 0.5
    while True:
        words = sample_expression(rng, answer)
        flipped = flip_to_change(rng, words)
        if flipped is not None:
            break
    demos = [sample_expression(rng, rng.random() < 0.5) for _ in range(k)]
    good, bad = f" {answer}", f" {not answer}"
    return Example(clean=format_prompt(style, words, demos), corrupt=format_prompt(style, flipped, demos),
                   answer=good, corrupt_answer=bad, good=(good,), bad=(bad,))


def sample_boolean_instruction(rng: random.Random) -> Example:
    """Instruction-prompted Boolean expression."""
    return sample_boolean(rng, "instruction")


def sample_boolean_fewshot(rng: random.Random) -> Example:
    """Few-shot Boolean expression (k worked examples, k from data/boolean.json)."""
    return sample_boolean(rng, "fewshot")
