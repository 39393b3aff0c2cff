"""Read and write the JSONL task format (README, "Custom data (JSONL)"); every bad line is reported by number."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from engine.tasks.base import SPLITS, DataError, Example, Task, Tokenizer, tokenize

PREDICT = re.compile(r"<predict>(.*?)</predict>", re.DOTALL)
FEW_LINES = 10  # below this many unsplit lines, every line serves in every split
SPLIT_SEED = 0  # lines without a split are shuffled with this seed, then cut 80/10/10


def _span(text: Any, key: str) -> tuple[str, str]:
    """(prompt, answer) of one `...<predict>answer</predict>` string; ValueError says what is wrong."""
    if not isinstance(text, str):
        raise ValueError(f"{key!r} must be a string, got {type(text).__name__}")
    spans = list(PREDICT.finditer(text))
    if not spans:
        raise ValueError(f"{key!r} has no <predict>answer</predict> span")
    if len(spans) > 1:
        raise ValueError(f"{key!r} has {len(spans)} <predict> spans; exactly one is allowed")
    if text[spans[0].end():]:
        raise ValueError(f"{key!r} has text after </predict>; the answer must end the line")
    if not spans[0].group(1):
        raise ValueError(f"{key!r} has an empty answer")
    return text[: spans[0].start()], spans[0].group(1)


def _completions(obj: dict[str, Any], key: str) -> tuple[str, ...]:
    value = obj.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{key!r} must be a list of non-empty strings")
    return tuple(value)


def parse_line(line: str) -> Example:
    """One JSONL line as an Example. Raises ValueError with the reason when the line is invalid."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"invalid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    missing = [k for k in ("clean", "corrupted") if k not in obj]
    if missing:
        raise ValueError(f"missing key(s) {missing}; each line needs 'clean' and 'corrupted'")
    clean, answer = _span(obj["clean"], "clean")
    corrupt, corrupt_answer = _span(obj["corrupted"], "corrupted")
    split = obj.get("split")
    if split is not None and split not in SPLITS:
        raise ValueError(f"split {split!r} is not one of {list(SPLITS)}")
    return Example(clean=clean, corrupt=corrupt, answer=answer,
                   corrupt_answer=corrupt_answer if corrupt_answer != answer else None,
                   good=_completions(obj, "good"), bad=_completions(obj, "bad"), split=split)


def _text_lines(path: str | Path) -> list[tuple[int, str | None]]:
    """(1-based line number, text or None where the line is not UTF-8) of every line; a UTF-8 byte-order mark
    and CRLF/CR line ends are accepted. Raises DataError once for a file that is not text at all."""
    data = Path(path).read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if not data.strip():
        raise DataError(str(path), [(None, "the file has no examples: it is empty (expected one JSON object per line)")])
    lines = data.splitlines()
    out: list[tuple[int, str | None]] = []
    for n, raw in enumerate(lines, start=1):
        try:
            out.append((n, raw.decode("utf-8")))
        except UnicodeDecodeError:
            out.append((n, None))
    bad = sum(text is None for _, text in out)
    if b"\x00" in data or out[0][1] is None or bad > max(3, len(out) // 10):   # a binary file, not a few bad lines
        raise DataError(str(path), [(None, f"not a UTF-8 text file ({len(data):,} bytes, {bad} of {len(out)} line(s) "
                                           "are not UTF-8); expected JSONL: one JSON object per line")])
    return out


def _read(path: str | Path) -> tuple[list[Example], list[int]]:
    """Examples and their 1-based line numbers (blank lines are skipped). Raises DataError listing every bad line."""
    examples, numbers, problems = [], [], []
    for n, line in _text_lines(path):
        if line is None:
            problems.append((n, "not valid UTF-8"))
            continue
        if not line.strip():
            continue
        try:
            examples.append(parse_line(line))
            numbers.append(n)
        except ValueError as e:
            problems.append((n, str(e)))
    if problems:
        raise DataError(str(path), problems)
    return examples, numbers


def read_jsonl(path: str | Path) -> list[Example]:
    """Every example of a JSONL task file.

    Raises:
        DataError: listing (line number, reason) for every invalid line, or one reason for a file that is
            empty or not UTF-8 text.
    """
    return _read(path)[0]


def write_jsonl(examples: Iterable[Example], path: str | Path) -> None:
    """Write examples as JSONL, one `Example.to_json()` object per line."""
    lines = [json.dumps(ex.to_json(), ensure_ascii=False) for ex in examples]
    Path(path).write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def assign_splits(examples: list[Example], seed: int = SPLIT_SEED) -> dict[str, list[int]]:
    """Indices of the examples in each split.

    Lines with a split keep it. The others are shuffled with `seed` and cut 80/10/10, except that a
    file with fewer than FEW_LINES lines and no split at all uses every line in every split.
    """
    out: dict[str, list[int]] = {s: [i for i, ex in enumerate(examples) if ex.split == s] for s in SPLITS}
    free = [i for i, ex in enumerate(examples) if ex.split is None]
    if len(free) == len(examples) and len(free) < FEW_LINES:
        return {s: list(free) for s in SPLITS}
    random.Random(seed).shuffle(free)
    n_val = n_test = len(free) // 10
    n_train = len(free) - n_val - n_test
    out["train"] += free[:n_train]
    out["validation"] += free[n_train:n_train + n_val]
    out["test"] += free[n_train + n_val:]
    return {s: sorted(idx) for s, idx in out.items()}


def load_jsonl_task(path: str | Path, tokenizer: Tokenizer, n_ctx: int, bos_id: int | None = None,
                    name: str | None = None) -> Task:
    """A Task from a JSONL file, tokenized and aligned.

    Metric: "logit_diff" when the examples name bad completions, else "accuracy".

    Raises:
        DataError: every invalid line, misaligned clean/corrupted pair or over-long line, by line number.
    """
    examples, numbers = _read(path)
    splits, problems = {}, set()
    assigned, notes = fill_missing_splits(assign_splits(examples))
    for split, idx in assigned.items():
        splits[split], bad = tokenize([examples[i] for i in idx], tokenizer, n_ctx, bos_id, source=str(path),
                                      numbers=[numbers[i] for i in idx])
        problems.update(bad)
    if problems:
        raise DataError(str(path), sorted(problems))
    metric = "logit_diff" if any(ex.bad for ex in examples) else "accuracy"
    meta = {"source": str(path), **({"splits_note": "; ".join(notes)} if notes else {})}
    return Task(name=name or Path(path).stem, metric=metric, splits=splits,
                description=f"custom task from {Path(path).name}", meta=meta)


def fill_missing_splits(splits: dict[str, list[int]], seed: int = SPLIT_SEED) -> tuple[dict[str, list[int]], list[str]]:
    """A file that names splits but lacks validation or test lines (e.g. train and test only) takes them from
    train: 10% of its lines each (at least one), or every train line when train has fewer than FEW_LINES.
    Returns the splits and a sentence for each split taken (to show the user)."""
    train, notes = list(splits["train"]), []
    missing = [s for s in ("validation", "test") if not splits[s]]
    if not train or not missing:
        return splits, notes
    out = dict(splits)
    if len(train) < FEW_LINES:
        for s in missing:
            out[s] = list(train)
            notes.append(f"no {s} lines: {s} uses the {len(train)} train line(s) too")
        return out, notes
    random.Random(seed).shuffle(train)
    k = max(1, len(train) // 10)
    for i, s in enumerate(missing):
        out[s] = sorted(train[i * k:(i + 1) * k])
        notes.append(f"no {s} lines: {k} of the {len(splits['train'])} train lines became the {s} split")
    out["train"] = sorted(train[len(missing) * k:])
    return out, notes
