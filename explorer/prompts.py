"""Prompt lab logic: parse typed prompts, align corrupted twins, compare full model and circuit predictions (pure)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

import engine
from engine import Circuit, MaskedTransformer, Task


@dataclass(frozen=True)
class PromptRow:
    clean: str
    corrupt: str | None = None
    answer: str | None = None


@dataclass(frozen=True)
class Prediction:
    """Top-k of the full model and of the circuit for one prompt; `problem` explains a skipped row."""

    row: PromptRow
    corrupt_source: str = ""
    full: tuple[tuple[str, float], ...] = ()
    circuit: tuple[tuple[str, float], ...] = ()
    problem: str = ""

    @property
    def agree(self) -> bool:
        return bool(self.full and self.circuit) and self.full[0][0] == self.circuit[0][0]

    def correct(self, which: str) -> bool | None:
        top = self.full if which == "full" else self.circuit
        if not self.row.answer or not top:
            return None
        return top[0][0].strip() == self.row.answer.strip()


def parse(text: str) -> list[PromptRow]:
    """One prompt per line: `clean`, `clean | corrupted`, or `clean | corrupted | expected answer`."""
    rows = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = [p for p in line.split("|")] + ["", ""]
        clean, corrupt, answer = parts[0].rstrip(), parts[1].strip(), parts[2].strip()
        rows.append(PromptRow(clean, corrupt or None, answer or None))
    return rows


def _task_twin(task: Task | None, n_tokens: int) -> tuple[list[int], str] | None:
    """A corrupted prompt of the same length from the task's test split (the task's own corruption)."""
    if task is None:
        return None
    data = task.split("test")
    for i in range(len(data)):
        n = int(data.positions[i, 0]) + 1
        if n == n_tokens:
            return data.corrupt[i, :n].tolist(), f"task example {i + 1} (corrupted)"
    return None


def _encode(model: MaskedTransformer, text: str) -> list[int]:
    return list(model.tokenizer.encode(text, add_special_tokens=False))


def _align(model: MaskedTransformer, row: PromptRow, task: Task | None) -> tuple[list[int], list[int], str] | str:
    clean = _encode(model, row.clean)
    if not clean:
        return "the prompt is empty"
    if len(clean) > model.cfg.n_ctx:
        return f"the prompt is {len(clean)} tokens; the model reads at most {model.cfg.n_ctx}"
    if row.corrupt:
        corrupt = _encode(model, row.corrupt)
        if len(corrupt) != len(clean):
            return (f"the corrupted twin is {len(corrupt)} tokens but the prompt is {len(clean)}; "
                    "they must align position by position")
        return clean, corrupt, "your corrupted twin"
    twin = _task_twin(task, len(clean))
    if twin is None:
        return f"no corrupted twin given and no task example has {len(clean)} tokens; add `| corrupted prompt`"
    return clean, twin[0], twin[1]


def _decode(model: MaskedTransformer, probs: torch.Tensor, ids: torch.Tensor) -> tuple[tuple[str, float], ...]:
    return tuple((model.tokenizer.decode([int(i)]), float(p)) for p, i in zip(probs, ids))


def predict_rows(model: MaskedTransformer, circuit: Circuit, rows: list[PromptRow], task: Task | None,
                 k: int = 5) -> list[Prediction]:
    """Top-k next tokens of the full model and of the circuit (interchange-ablated) for each row."""
    if model.tokenizer is None:
        raise ValueError("this model has no tokenizer, so typed prompts cannot be read")
    out = []
    for row in rows:
        aligned = _align(model, row, task)
        if isinstance(aligned, str):
            out.append(Prediction(row, problem=aligned))
            continue
        clean, corrupt, source = aligned
        c, x = torch.tensor([clean]), torch.tensor([corrupt])
        pf, idf = engine.predict(model, c, None, None, k=k)
        pc, idc = engine.predict(model, c, circuit.keep.float(), x, k=k)
        out.append(Prediction(row, source, _decode(model, pf[0], idf[0]), _decode(model, pc[0], idc[0])))
    return out


def accuracy(preds: list[Prediction], which: str) -> float | None:
    marks = [p.correct(which) for p in preds]
    marks = [m for m in marks if m is not None]
    return sum(marks) / len(marks) if marks else None
