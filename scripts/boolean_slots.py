"""Per-answer-slot accuracy of a Boolean model on few-shot prompts: does it lose the query, or the demos too?

    python scripts/boolean_slots.py assets/models/boolean-4l [--k 1 2 3] [--n 400]

For each k (number of worked demos), draws `n` held-out few-shot prompts (scripts/heldout.py, the test seed
of scripts/train_embedded.py) and scores the model at every `is`: the demos' answer slots (their answer
is in the prompt right after) and the query's. Also scores the instruction style on the same queries.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

from heldout import is_heldout  # noqa: E402

from engine.tasks.boolean import sample_boolean  # noqa: E402

TEST_SEED = 10_001  # EVAL_SEED + 1 of scripts/train_embedded.py


@torch.no_grad()
def slot_accuracy(model, tok, style: str, k: int, n: int, seed: int) -> list[float]:
    """Accuracy at each `is` of `n` held-out prompts (demo slots 1..k, then the query)."""
    rng, vocab = random.Random(seed), tok.get_vocab()
    is_id, true_id, false_id = vocab[" is"], vocab[" True"], vocab[" False"]
    hits, count = [0] * (k + 1), [0] * (k + 1)
    task = f"boolean_{style}"
    for _ in range(n):
        while not is_heldout(task, (ex := sample_boolean(rng, style, k)).clean):
            pass
        ids = tok.encode(ex.clean + ex.answer, add_special_tokens=False)
        logits = model(torch.tensor([ids[:-1]])).logits[0]
        slots = [i for i, t in enumerate(ids[:-1]) if t == is_id]
        slots = slots if style == "fewshot" else [None] * k + slots
        for j, pos in enumerate(slots):
            if pos is None:
                continue
            says_true = logits[pos, true_id] > logits[pos, false_id]
            hits[j] += int(says_true == (ids[pos + 1] == true_id))
            count[j] += 1
    return [round(h / c, 3) if c else None for h, c in zip(hits, count)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--k", type=int, nargs="*", default=[1, 2, 3])
    ap.add_argument("--n", type=int, default=400)
    args = ap.parse_args()
    from transformers import AutoTokenizer, GPT2LMHeadModel

    torch.set_num_threads(1)
    model = GPT2LMHeadModel.from_pretrained(args.model, local_files_only=True).eval()
    tok = AutoTokenizer.from_pretrained(args.model, local_files_only=True)
    for k in args.k:
        demos = slot_accuracy(model, tok, "fewshot", k, args.n, TEST_SEED)
        instr = slot_accuracy(model, tok, "instruction", k, args.n, TEST_SEED)
        print(json.dumps({"k": k, "fewshot_slots": demos, "instruction_query": instr[-1]}), flush=True)


if __name__ == "__main__":
    main()
