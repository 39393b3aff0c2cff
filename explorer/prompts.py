"""Prompt lab logic: parse typed prompts, show how each is tokenized and aligned with its corrupted twin, compare the
full model's and the circuit's predictions and logit differences (pure)."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

import torch

from engine import Circuit, MaskedTransformer, Task


@dataclass(frozen=True)
class PromptRow:
    clean: str
    corrupt: str | None = None
    answer: str | None = None


@dataclass(frozen=True)
class Tokens:
    """One prompt's tokens and its twin's, position by position, with what is wrong with them."""

    clean: tuple[str, ...]
    corrupt: tuple[str, ...] = ()
    unknown: tuple[str, ...] = ()        # words of the prompt or twin the tokenizer reads as its unknown token
    unknown_at: tuple[int, ...] = ()     # positions holding one (in the prompt or the twin)
    misaligned: tuple[int, ...] = ()     # prompt positions without a one-for-one counterpart in the twin (0-based)

    def warnings(self) -> list[str]:
        out = []
        if self.unknown:
            out.append("the tokenizer does not know " + ", ".join(repr(w) for w in self.unknown)
                       + ": the model reads each as its unknown token, so no answer can depend on them")
        if self.misaligned:
            out.append("the twin does not align with the prompt at position(s) "
                       + ", ".join(f"{i} ({self.clean[i]!r})" for i in self.misaligned if i < len(self.clean))
                       + ": a twin must change words one token for one token")
        return out


@dataclass(frozen=True)
class LogitDiff:
    """logit(expected) - logit(contrast) at the answer position, for the full model and the circuit."""

    expected: str
    contrast: str
    why: str          # "the twin's answer" or "the best other candidate"
    full: float
    circuit: float


@dataclass(frozen=True)
class Prediction:
    """Top-k of the full model and of the circuit for one prompt; `problem` explains a skipped row."""

    row: PromptRow
    tokens: Tokens | None = None
    corrupt_source: str = ""
    full: tuple[tuple[str, float], ...] = ()
    circuit: tuple[tuple[str, float], ...] = ()
    diff: LogitDiff | None = None
    problem: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def agree(self) -> bool:
        return bool(self.full and self.circuit) and self.full[0][0] == self.circuit[0][0]

    def correct(self, which: str) -> bool | None:
        top = self.full if which == "full" else self.circuit
        if not self.row.answer or not top:
            return None
        return top[0][0].strip() == self.row.answer.strip()

    @property
    def warnings(self) -> list[str]:
        return (self.tokens.warnings() if self.tokens else []) + list(self.notes)


def parse(text: str) -> list[PromptRow]:
    """One prompt per line: `clean`, `clean | corrupted`, or `clean | corrupted | expected answer`."""
    rows = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split("|") + ["", ""]
        clean, corrupt, answer = parts[0].rstrip(), parts[1].strip(), parts[2].strip()
        rows.append(PromptRow(clean, corrupt or None, answer or None))
    return rows


def _encode(model: MaskedTransformer, text: str) -> tuple[list[int], list[str]]:
    """Token ids and, per token, the piece of `text` it came from (what an unknown token stands for)."""
    tok = model.tokenizer
    try:
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        return list(enc["input_ids"]), [text[a:b].strip() for a, b in enc["offset_mapping"]]
    except (NotImplementedError, TypeError, KeyError):  # a slow tokenizer has no offsets
        ids = list(tok.encode(text, add_special_tokens=False))
        return ids, [tok.decode([i]).strip() for i in ids]


def _pieces(model: MaskedTransformer, ids: list[int]) -> tuple[str, ...]:
    return tuple(model.tokenizer.decode([i]) for i in ids)


def _unknown(model: MaskedTransformer, *encoded: tuple[list[int], list[str]]) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """The words read as the unknown token, and their positions."""
    unk = getattr(model.tokenizer, "unk_token_id", None)
    hits = [(p, w) for ids, words in encoded for p, (i, w) in enumerate(zip(ids, words)) if unk is not None and i == unk]
    return tuple(dict.fromkeys(w for _, w in hits)), tuple(sorted({p for p, _ in hits}))


def _misaligned(clean: list[int], corrupt: list[int]) -> tuple[int, ...]:
    """Clean positions where the twin inserts, drops, or swaps a different number of tokens (equal-length swaps
    are the corruption itself and align)."""
    ops = difflib.SequenceMatcher(a=clean, b=corrupt, autojunk=False).get_opcodes()
    bad = {i for op, i1, i2, j1, j2 in ops if op != "equal" and (i2 - i1) != (j2 - j1)
           for i in range(i1, max(i2, i1 + 1))}
    return tuple(sorted(i for i in bad if i < len(clean)))


def _task_twin(task: Task | None, n_tokens: int) -> tuple[list[int], str, str] | None:
    """A corrupted prompt of the same length from the task's test split, its text and where it comes from."""
    if task is None:
        return None
    data = task.split("test")
    for i in range(len(data)):
        if int(data.positions[i, 0]) + 1 == n_tokens:
            text = data.examples[i].corrupt if i < len(data.examples) else ""
            why = (f"task {task.name}, test example {i + 1} (corrupted), borrowed because this line gives no twin: "
                   f"the first one with the same {n_tokens} tokens")
            return data.corrupt[i, :n_tokens].tolist(), text, why
    return None


def _align(model: MaskedTransformer, row: PromptRow, task: Task | None) -> tuple[list[int], list[int], str, Tokens] | \
        tuple[str, Tokens | None]:
    """(clean ids, corrupt ids, where the twin comes from, tokens), or (why the row is skipped, tokens)."""
    clean, words = _encode(model, row.clean)
    if not clean:
        return "the prompt is empty", None
    if row.corrupt:
        corrupt, cwords = _encode(model, row.corrupt)
        source = "your corrupted twin"
    else:
        twin = _task_twin(task, len(clean))
        corrupt, cwords, source = ([], [], "") if twin is None else (twin[0], _pieces(model, twin[0]), twin[2])
    tokens = Tokens(_pieces(model, clean), _pieces(model, corrupt), *_unknown(model, (clean, words), (corrupt, cwords)),
                    _misaligned(clean, corrupt) if corrupt else ())
    if len(clean) > model.cfg.n_ctx:
        return f"the prompt is {len(clean)} tokens; the model reads at most {model.cfg.n_ctx}", tokens
    if not corrupt:
        return (f"no corrupted twin given and no task example has {len(clean)} tokens; add `| corrupted prompt`",
                tokens)
    if len(corrupt) != len(clean):
        return (f"the corrupted twin is {len(corrupt)} tokens but the prompt is {len(clean)}; "
                "they must align position by position", tokens)
    return clean, corrupt, source, tokens


def _logits(model: MaskedTransformer, clean: list[int], keep: torch.Tensor | None, corrupt: list[int]) -> torch.Tensor:
    """Next-token logits [vocab] at the last position: the full model (keep None) or the circuit."""
    c = torch.tensor([clean], device=model.device)
    pos = torch.tensor([[len(clean) - 1]], device=model.device)
    with torch.no_grad():
        if keep is None:
            out = model.reference_forward(c, pos)
        else:
            x = torch.tensor([corrupt], device=model.device)
            out = model(c, keep.to(model.device, model.dtype), model.corrupt_cache(x), pos)
    return out[0, 0].float().cpu()


def _top(model: MaskedTransformer, logits: torch.Tensor, k: int) -> tuple[tuple[str, float], ...]:
    top = torch.softmax(logits, -1).topk(min(k, logits.shape[-1]))
    return tuple((model.tokenizer.decode([int(i)]), float(p)) for p, i in zip(top.values, top.indices))


def _logit_diff(model: MaskedTransformer, row: PromptRow, full: torch.Tensor, circ: torch.Tensor,
                twin: torch.Tensor) -> tuple[LogitDiff | None, str]:
    """Expected answer vs the twin's answer (the full model's top token on the twin), or vs the best other
    candidate when the twin's answer is the expected one. Returns (diff, a note on the answer's tokens)."""
    if not row.answer:
        return None, ""
    ids = list(model.tokenizer.encode(" " + row.answer.strip(), add_special_tokens=False))
    if not ids:
        return None, ""
    note = (f"the expected answer {row.answer!r} is {len(ids)} tokens; its first, "
            f"{model.tokenizer.decode([ids[0]])!r}, is compared" if len(ids) > 1 else "")
    e, other, why = ids[0], int(twin.argmax()), "the twin's answer"
    if other == e:
        other, why = int(full.clone().index_fill_(0, torch.tensor([e]), float("-inf")).argmax()), \
            "the best other candidate (the twin's answer is the expected one)"
    d = LogitDiff(model.tokenizer.decode([e]), model.tokenizer.decode([other]), why,
                  float(full[e] - full[other]), float(circ[e] - circ[other]))
    return d, note


def predict_rows(model: MaskedTransformer, circuit: Circuit, rows: list[PromptRow], task: Task | None,
                 k: int = 5) -> list[Prediction]:
    """Per row: tokens and alignment, top-k next tokens of the full model and of the circuit (interchange-ablated),
    and the logit difference of the expected answer."""
    if model.tokenizer is None:
        raise ValueError("this model has no tokenizer, so typed prompts cannot be read")
    out, keep = [], circuit.keep.float()
    for row in rows:
        aligned = _align(model, row, task)
        if len(aligned) == 2:
            out.append(Prediction(row, aligned[1], problem=aligned[0]))
            continue
        clean, corrupt, source, tokens = aligned
        full, circ, twin = _logits(model, clean, None, corrupt), _logits(model, clean, keep, corrupt), \
            _logits(model, corrupt, None, corrupt)
        diff, note = _logit_diff(model, row, full, circ, twin)
        out.append(Prediction(row, tokens, source, _top(model, full, k), _top(model, circ, k), diff,
                              notes=(note,) if note else ()))
    return out


def accuracy(preds: list[Prediction], which: str) -> tuple[float | None, int]:
    """(share of correct top-1 answers, n): over the rows that have an expected answer and ran."""
    marks = [m for m in (p.correct(which) for p in preds) if m is not None]
    return (sum(marks) / len(marks) if marks else None), len(marks)


def token_table(tokens: Tokens) -> list[dict]:
    """One row per position: the prompt's token, the twin's, and what is wrong there."""
    n = max(len(tokens.clean), len(tokens.corrupt))
    rows = []
    for i in range(n):
        c = tokens.clean[i] if i < len(tokens.clean) else ""
        x = tokens.corrupt[i] if i < len(tokens.corrupt) else ""
        marks = ["misaligned"] if i in tokens.misaligned or (tokens.corrupt and not (c and x)) else []
        marks += ["unknown word"] if i in tokens.unknown_at else []
        rows.append({"position": i, "prompt": c, "twin": x, "": ", ".join(marks)})
    return rows
