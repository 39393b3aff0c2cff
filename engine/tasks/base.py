"""Task data: prompt pairs as text (Example) and as aligned, padded token tensors (TaskData)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor

SPLITS = ("train", "validation", "test")


class Tokenizer(Protocol):
    """What the engine needs of a tokenizer (any Hugging Face tokenizer qualifies)."""

    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...
    def decode(self, ids: Sequence[int]) -> str: ...


class DataError(ValueError):
    """Invalid task data; `problems` lists (line or example number, reason) for every bad item, or
    (None, reason) once for a problem of the whole file (not text, no examples)."""

    def __init__(self, source: str, problems: list[tuple[int | None, str]], what: str = "line") -> None:
        self.source, self.problems, self.what = source, problems, what
        if len(problems) == 1 and problems[0][0] is None:
            super().__init__(f"{source}: {problems[0][1]}")
            return
        shown = "\n".join(f"  {item}" for item in self.items()[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(f"{source}: {len(problems)} invalid {what}(s)\n{shown}{more}")

    def items(self) -> list[str]:
        """One readable line per problem: "line 3: reason", or the reason alone for the whole file."""
        return [reason if n is None else f"{self.what} {n}: {reason}" for n, reason in self.problems]


@dataclass(frozen=True)
class Example:
    """One clean/corrupted prompt pair as text.

    The model reads `clean` and should continue with `answer`. `corrupt` must tokenize to the same
    number of tokens as `clean` (position-aligned interchange ablation). `good` and `bad` are the
    completions the task metric compares at the first answer position (default: good = (answer,)).
    """

    clean: str
    corrupt: str
    answer: str
    corrupt_answer: str | None = None  # continuation of the corrupted prompt; None = same as answer
    good: tuple[str, ...] = ()
    bad: tuple[str, ...] = ()
    split: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSONL format of the README's "Custom data (JSONL)" (with the optional `good`/`bad` lists)."""
        out: dict[str, Any] = {"clean": f"{self.clean}<predict>{self.answer}</predict>",
                               "corrupted": f"{self.corrupt}<predict>{self.corrupt_answer or self.answer}</predict>"}
        if self.split:
            out["split"] = self.split
        if self.good and tuple(self.good) != (self.answer,):
            out["good"] = list(self.good)
        if self.bad:
            out["bad"] = list(self.bad)
        return out


@dataclass(frozen=True, eq=False)
class TaskData:
    """One split, tokenized and position-aligned, right-padded (padding is never scored; models are causal).

    clean, corrupt: long [N, P]
    lengths:        long [N]     tokens per example (clean and corrupt alike)
    positions:      long [N, K]  positions whose next-token prediction is scored; -1 = unused slot
    answers:        long [N, K]  clean answer token predicted at each scored position; -1 = unused
    good, bad:      long [N, G]  token ids the task metric compares at the first scored position; -1 pad
    """

    clean: Tensor
    corrupt: Tensor
    lengths: Tensor
    positions: Tensor
    answers: Tensor
    good: Tensor
    bad: Tensor
    examples: tuple[Example, ...] = ()

    def __len__(self) -> int:
        return int(self.clean.shape[0])

    def select(self, idx: Tensor | Sequence[int]) -> TaskData:
        """Rows `idx`, trimmed to their longest example."""
        idx = torch.as_tensor(idx, dtype=torch.long)
        width = int(self.lengths[idx].max()) if len(idx) else 1
        ex = tuple(self.examples[i] for i in idx.tolist()) if self.examples else ()
        return TaskData(self.clean[idx, :width], self.corrupt[idx, :width], self.lengths[idx],
                        self.positions[idx], self.answers[idx], self.good[idx], self.bad[idx], ex)

    def to(self, device: torch.device | str) -> TaskData:
        t = {k: getattr(self, k).to(device) for k in ("clean", "corrupt", "lengths", "positions", "answers",
                                                        "good", "bad")}
        return TaskData(**t, examples=self.examples)


@dataclass(frozen=True, eq=False)
class Task:
    """A named task: its splits and the metric it is judged by.

    metric: "logit_diff" (mean logit of good minus of bad), "prob_diff" (P(good) - P(bad)),
    or "accuracy" when there are no distractors (argmax equals the answer).
    """

    name: str
    metric: str
    splits: Mapping[str, TaskData]
    description: str = ""
    loss: str = "kl"              # pruning objective: "kl" (next-token distributions) or "mse" (numeric outputs)
    meta: Mapping[str, str] = field(default_factory=dict)

    def split(self, name: str) -> TaskData:
        if name not in self.splits or len(self.splits[name]) == 0:
            have = sorted(k for k, v in self.splits.items() if len(v))
            raise KeyError(f"task {self.name!r} has no {name!r} examples; it has {have}")
        return self.splits[name]


def _ids(tokenizer: Tokenizer, text: str) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=False))


def tokenize(examples: Sequence[Example], tokenizer: Tokenizer, n_ctx: int, bos_id: int | None = None,
             source: str = "examples", numbers: Sequence[int] | None = None) -> tuple[TaskData, list[tuple[int, str]]]:
    """Tokenize and align examples. Returns the data of the good ones and (number, reason) for the rest.

    Clean and corrupted prompts must have the same token count (else the example is rejected,
    never silently misaligned); the whole sequence must fit in `n_ctx` tokens.
    """
    numbers = list(numbers) if numbers is not None else list(range(1, len(examples) + 1))
    rows, problems = [], []
    for n, ex in zip(numbers, examples):
        pre = [bos_id] if bos_id is not None else []
        clean, corrupt = pre + _ids(tokenizer, ex.clean), pre + _ids(tokenizer, ex.corrupt)
        answer = _ids(tokenizer, ex.answer)
        c_answer = _ids(tokenizer, ex.corrupt_answer) if ex.corrupt_answer else answer
        if not answer:
            problems.append((n, "the answer is empty"))
            continue
        if len(clean) != len(corrupt):
            problems.append((n, f"clean and corrupted prompts tokenize to different lengths "
                                f"({len(clean)} vs {len(corrupt)} tokens); they must align position by position"))
            continue
        if len(clean) == 0:
            problems.append((n, "the prompt is empty"))
            continue
        if len(c_answer) != len(answer):
            c_answer = answer  # the corrupted continuation only feeds later answer positions; keep them aligned
        total = len(clean) + len(answer) - 1
        if total > n_ctx:
            problems.append((n, f"prompt and answer are {total} tokens; the model reads at most {n_ctx}"))
            continue
        good = [_first(tokenizer, g) for g in (ex.good or (ex.answer,))]
        bad = [_first(tokenizer, b) for b in ex.bad]
        if None in good or None in bad:
            problems.append((n, "a good/bad completion is empty"))
            continue
        rows.append((ex, clean + answer[:-1], corrupt + c_answer[:-1],
                     list(range(len(clean) - 1, total)), answer, good, bad))
    return _stack(rows), problems


def _first(tokenizer: Tokenizer, text: str) -> int | None:
    ids = _ids(tokenizer, text)
    return ids[0] if ids else None


def _pad(seqs: list[list[int]], fill: int, width: int | None = None) -> Tensor:
    width = max((len(s) for s in seqs), default=0) if width is None else width
    out = torch.full((len(seqs), width), fill, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return out


def _stack(rows: list) -> TaskData:
    if not rows:
        empty = torch.zeros(0, 1, dtype=torch.long)
        return TaskData(empty, empty, torch.zeros(0, dtype=torch.long), empty, empty, empty, empty, ())
    ex, clean, corrupt, pos, ans, good, bad = zip(*rows)
    return TaskData(_pad(list(clean), 0), _pad(list(corrupt), 0), torch.tensor([len(c) for c in clean]),
                    _pad(list(pos), -1), _pad(list(ans), -1), _pad(list(good), -1),
                    _pad(list(bad), -1, max(1, max(len(b) for b in bad))), tuple(ex))
