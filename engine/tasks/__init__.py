"""Built-in tasks: the TASKS registry, get_task(name, tokenizer, n, seed), and JSONL export."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from engine.tasks.base import SPLITS, DataError, Example, Task, Tokenizer, tokenize
from engine.tasks.boolean import sample_boolean_fewshot, sample_boolean_instruction
from engine.tasks.gendered_pronoun import sample_gendered_pronoun
from engine.tasks.greater_than import sample_greater_than
from engine.tasks.ioi import sample_ioi, sample_ioi_t1
from engine.tasks.jsonl import load_jsonl_task, read_jsonl, write_jsonl
from engine.tasks.sampling import Sampler, sample_examples

__all__ = ["TASKS", "TaskSpec", "DataError", "Example", "Task", "get_task", "task_examples", "write_task_jsonl",
           "load_jsonl_task", "read_jsonl", "write_jsonl"]


@dataclass(frozen=True)
class TaskSpec:
    """A built-in task: how to draw one example, and the metric it is judged by."""

    sample: Sampler   # seeded generator of one Example (text only)
    metric: str       # "logit_diff" | "prob_diff" | "accuracy" (see base.Task)
    description: str


TASKS: dict[str, TaskSpec] = {
    "ioi": TaskSpec(sample_ioi, "logit_diff",
                    "Indirect object identification over 15 templates; ABC corruption; IO vs S logit difference."),
    "ioi_t1": TaskSpec(sample_ioi_t1, "logit_diff", "IOI with a single template (IOI-t1); ABC corruption."),
    "greater_than": TaskSpec(sample_greater_than, "prob_diff",
                             "'The war lasted from the year 1743 to 17': P(years > start) - P(years <= start); "
                             "corrupted start year 01."),
    "gendered_pronoun": TaskSpec(sample_gendered_pronoun, "logit_diff",
                                 "'So Evan is a really great friend, isn't' -> he/she; corrupted by a name of the "
                                 "other gender."),
    "boolean_instruction": TaskSpec(sample_boolean_instruction, "logit_diff",
                                    "Boolean expressions (3-6 literals, depth <= 3) after an instruction; corrupted "
                                    "by flipping literals so the answer changes."),
    "boolean_fewshot": TaskSpec(sample_boolean_fewshot, "logit_diff",
                                "The same Boolean expressions after k worked examples (k in data/boolean.json)."),
}


def _spec(name: str) -> TaskSpec:
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; choose from {sorted(TASKS)}")
    return TASKS[name]


def split_sizes(n: int) -> dict[str, int]:
    """Examples per split for `n` training examples: n train, n // 4 validation, n // 4 test (at least 1 each)."""
    return {"train": n, "validation": max(1, n // 4), "test": max(1, n // 4)}


def task_examples(name: str, tokenizer: Tokenizer, n: int = 64, seed: int = 0) -> list[Example]:
    """The examples of every split of a built-in task, in train/validation/test order, `split` set.

    Splits are disjoint (no clean prompt appears twice) and every example aligns under `tokenizer`.

    Raises:
        KeyError: unknown task name (the message lists the valid names).
        ValueError: `n` < 1, or the tokenizer cannot express enough aligned examples.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    sizes = split_sizes(n)
    examples = sample_examples(_spec(name).sample, tokenizer, sum(sizes.values()), seed)
    out, start = [], 0
    for split in SPLITS:
        out += [replace(ex, split=split) for ex in examples[start:start + sizes[split]]]
        start += sizes[split]
    return out


def get_task(name: str, tokenizer: Tokenizer, n: int = 64, seed: int = 0, n_ctx: int = 1024,
             bos_id: int | None = None) -> Task:
    """A built-in task with train (n), validation (n // 4) and test (n // 4) splits, tokenized and aligned.

    Raises:
        KeyError: unknown task name (the message lists the valid names).
        ValueError: `n` < 1, or too few examples align under `tokenizer`.
        DataError: an example does not fit in `n_ctx` tokens.
    """
    spec = _spec(name)
    examples = task_examples(name, tokenizer, n, seed)
    splits, problems = {}, []
    for split in SPLITS:
        part = [ex for ex in examples if ex.split == split]
        splits[split], bad = tokenize(part, tokenizer, n_ctx, bos_id, source=name)
        problems += [(n_, f"{split}: {reason}") for n_, reason in bad]
    if problems:
        raise DataError(f"task {name}", problems, what="example")
    return Task(name=name, metric=spec.metric, splits=splits, description=spec.description,
                meta={"n": str(n), "seed": str(seed), "source": "builtin"})


def write_task_jsonl(name: str, tokenizer: Tokenizer, path: str | Path, n: int = 64, seed: int = 0) -> int:
    """Write a built-in task's examples (all splits) in the README's JSONL format; returns the line count."""
    examples = task_examples(name, tokenizer, n, seed)
    write_jsonl(examples, path)
    return len(examples)


def sample_texts(name: str, n: int, seed: int = 0) -> Sequence[Example]:
    """`n` raw draws of a task's generator (no tokenizer, duplicates allowed): corpora for training models."""
    rng, sample = random.Random(seed), _spec(name).sample
    return [sample(rng) for _ in range(n)]
