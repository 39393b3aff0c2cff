"""Training batches for the embedded Boolean model: answer slots plus dense running-value targets.

Every sequence is an instruction prompt or a few-shot prompt (1-4 demos) made of the same words as
engine/tasks/boolean.py produces. Labels (next-token targets) are set only at
  - every `is` (the answer of that expression: demos and query alike), and
  - every literal and `)` (auxiliary: the value of the expression read so far, open groups closed);
all other positions are ignored; labels[:, j] is the target of the output at word j (unshifted).
The query follows a curriculum on its number of literals, the demos too if asked (else they come from
the full distribution). Some sequences (half by default) start at a random position offset, so that
late positions (the query of a few-shot prompt) are trained as often as early ones.
"""

from __future__ import annotations

import random

import torch

from engine.tasks.boolean import evaluate, running_values, sample_expression
from engine.tasks.sampling import load_data
from heldout import is_heldout

P_INSTRUCTION = 0.35      # default share of instruction-style batches
DEMO_COUNTS = (1, 2, 3, 3, 4)  # few-shot sequences draw their number of demos from this
CURRICULUM_END = 0.3      # share of the run after which queries use the full 3-6 literals
P_OFFSET = 0.5            # share of sequences at a random position offset


def _expression_words(words: list[str], answer_slot: bool) -> tuple[list[str], list[str | None]]:
    """Words of `expr is` (+ answer and `.` for a demo) and their next-token targets."""
    targets: list[str | None] = [None if v is None else str(v) for v in running_values(words)]
    value = str(evaluate(words))
    out, labels = [*words, "is"], [*targets, value]
    if answer_slot:
        out, labels = [*out, value, "."], [*labels, None, None]
    return out, labels


def _trainable(rng: random.Random, answer: bool, n_literals: tuple[int, int] | None = None) -> list[str]:
    """A random expression that is not held out (scripts/heldout.py) for testing."""
    while is_heldout("boolean", " ".join(words := sample_expression(rng, answer, n_literals))):
        pass
    return words


def boolean_sequence(rng: random.Random, progress: float, is_instruction: bool,
                     demo_counts: tuple[int, ...] = DEMO_COUNTS,
                     curriculum_demos: bool = False) -> tuple[list[str], list[str | None]]:
    """One training sequence as words, with the target word (or None) after each word.

    The query's number of literals follows the curriculum; the demos' too if `curriculum_demos`.
    """
    cfg = load_data("boolean")
    lo, hi = cfg["n_literals"]
    query_hi = min(hi, lo + int((hi - lo + 1) * progress / CURRICULUM_END))
    query = _trainable(rng, rng.random() < 0.5, (lo, query_hi))
    demo_literals = (lo, query_hi) if curriculum_demos else None
    if is_instruction:
        words = cfg["instruction"].split()
        labels: list[str | None] = [None] * len(words)
    else:
        words, labels = [], []
        for _ in range(rng.choice(demo_counts)):
            w, lab = _expression_words(_trainable(rng, rng.random() < 0.5, demo_literals), answer_slot=True)
            words, labels = words + w, labels + lab
    w, lab = _expression_words(query, answer_slot=False)
    return words + w, labels + lab


def boolean_batch(tok, batch: int, rng: random.Random, progress: float, n_ctx: int,
                  p_instruction: float = P_INSTRUCTION,
                  demo_counts: tuple[int, ...] = DEMO_COUNTS, curriculum_demos: bool = False,
                  p_offset: float = P_OFFSET) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input ids [batch, len], labels [batch, len] with -100 = ignored, position ids [batch, len])."""
    vocab = tok.get_vocab()
    is_instruction = rng.random() < p_instruction  # one style per batch: less padding
    rows = [boolean_sequence(rng, progress, is_instruction, demo_counts, curriculum_demos) for _ in range(batch)]
    width = max(len(w) for w, _ in rows)
    assert width <= n_ctx, f"a sequence of {width} words does not fit in {n_ctx} positions"
    ids = torch.full((batch, width), tok.pad_token_id)
    labels = torch.full((batch, width), -100)
    pos = torch.arange(width).repeat(batch, 1)
    for i, (words, targets) in enumerate(rows):
        ids[i, : len(words)] = torch.tensor([vocab[w if j == 0 else f" {w}"] for j, w in enumerate(words)])
        labels[i, : len(words)] = torch.tensor([-100 if t is None else vocab[f" {t}"] for t in targets])
        if rng.random() < p_offset:
            pos[i] += rng.randint(0, n_ctx - width)
    return ids, labels, pos
