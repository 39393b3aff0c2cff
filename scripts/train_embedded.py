"""Train the embedded GPT-2-architecture models of assets/models/ on the built-in task generators.

Usage (one thread per process, as the shared 2-core machine requires):
    python scripts/train_embedded.py ioi-2l            # ~1 min
    python scripts/train_embedded.py boolean-4l-v2     # ~40 CPU-min: the shipped boolean-4l
    python scripts/train_embedded.py all

Each model directory gets model.safetensors + config.json (transformers.GPT2LMHeadModel), the shared
word-level tokenizer (tokenizer.json + tokenizer_config.json) and train_log.json (command, time, accuracies).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

from boolean_corpus import boolean_batch  # noqa: E402
from heldout import is_heldout  # noqa: E402
from word_tokenizer import build_tokenizer, corpus_words, save_tokenizer  # noqa: E402

from engine.tasks import TASKS, sample_texts  # noqa: E402
from engine.tasks.base import Example, TaskData, tokenize  # noqa: E402
from engine.tasks.sampling import sample_examples  # noqa: E402

ANSWER_WEIGHT = 5.0  # the answer token counts this many times in the full next-token loss
EVAL_SEED = 10_000  # validation during training; the shipped test numbers use EVAL_SEED + 1


@dataclass(frozen=True)
class Recipe:
    """How one embedded model is trained."""

    tasks: tuple[str, ...]       # generators of the corpus (and the tasks it is scored on)
    n_layers: int = 2
    d_model: int = 128
    n_heads: int = 4
    n_ctx: int = 64              # learned positions
    steps: int = 1500
    batch: int = 64
    lr: float = 2e-3
    warmup: int = 100
    minutes: float = 0.0         # > 0: stop after this many CPU minutes of this process instead of `steps`
    eval_every: int = 250
    stop_at: float = 0.99        # stop early once every task's validation accuracy reaches this
    boolean: bool = False        # use the Boolean corpus (answer slots + dense running-value targets)
    p_instruction: float = 0.35  # Boolean corpus: share of instruction-style batches (the rest few-shot)
    demo_counts: tuple[int, ...] = (1, 2, 3, 3, 4)  # Boolean corpus: few-shot sequences draw their demo count from this
    curriculum_demos: bool = False  # Boolean corpus: the demos follow the literal-count curriculum too (else only the query)
    p_offset: float = 0.5        # Boolean corpus: share of sequences at a random position offset
    n_test: int = 1000           # held-out test prompts per task


RECIPES = {
    # 12 heads of d_head 8 (d_model 96): 606 edges, so a 95%-sparse circuit may keep 30 (see assets/MODELS.md)
    "ioi-2l": Recipe(tasks=("ioi", "ioi_t1"), d_model=96, n_heads=12, steps=2000, lr=3e-3),
    "greater-than-2l": Recipe(tasks=("greater_than",)),
    "pronoun-2l": Recipe(tasks=("gendered_pronoun",), steps=800),
    # boolean-4l and boolean-4l-fs: runs A-C of assets/MODELS.md (trained with the one-word label shift, now fixed)
    "boolean-4l": Recipe(tasks=("boolean_instruction", "boolean_fewshot"), n_layers=4, n_ctx=160, steps=10**9,
                         batch=32, lr=2e-3, warmup=150, minutes=50, eval_every=500, stop_at=0.98, boolean=True,
                         n_test=400),
    # the same with more few-shot batches
    "boolean-4l-fs": Recipe(tasks=("boolean_instruction", "boolean_fewshot"), n_layers=4, n_ctx=160, steps=10**9,
                            batch=32, lr=2e-3, warmup=150, minutes=50, eval_every=500, stop_at=0.98, boolean=True,
                            n_test=400, p_instruction=0.2),
    # the shipped boolean-4l (assets/MODELS.md): batch 64, 2-3 demos (the task's k is 3), curriculum on every expression
    "boolean-4l-v2": Recipe(tasks=("boolean_instruction", "boolean_fewshot"), n_layers=4, n_ctx=160, steps=10**9,
                            batch=64, lr=2e-3, warmup=150, minutes=70, eval_every=250, stop_at=0.98, boolean=True,
                            n_test=400, p_instruction=0.3, demo_counts=(1, 2, 2, 3, 3), curriculum_demos=True,
                            p_offset=0.25),
}


def lm_batch(tok, tasks: tuple[str, ...], batch: int, rng: random.Random) -> tuple[torch.Tensor, torch.Tensor, None]:
    """Prompt + answer texts from the generators, full next-token labels (pads = -100).

    Returns (ids [batch, len], labels [batch, len], weights [batch, len]); the answer's first
    label weighs ANSWER_WEIGHT. Held-out prompts (see `is_heldout`) are never trained on.
    """
    rows = []
    while len(rows) < batch:
        task = rng.choice(tasks)
        ex = sample_texts(task, 1, seed=rng.getrandbits(32))[0]
        if is_heldout(task, ex.clean):
            continue
        prompt = ([tok.bos_token_id] if rng.random() < 0.5 else []) + tok.encode(ex.clean, add_special_tokens=False)
        rows.append((prompt + tok.encode(ex.answer, add_special_tokens=False), len(prompt)))
    width = max(len(r) for r, _ in rows)
    ids = torch.full((batch, width), tok.pad_token_id)
    labels = torch.full((batch, width), -100)
    weights = torch.ones(batch, width)
    for i, (r, n_prompt) in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        labels[i, : len(r) - 1] = torch.tensor(r[1:])
        weights[i, n_prompt - 1] = ANSWER_WEIGHT
    return ids, labels, weights


def weighted_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy with per-position weights (labels -100 ignored)."""
    ce = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100,
                                           reduction="none")
    w = weights.flatten() * (labels.flatten() >= 0)
    return (ce * w).sum() / w.sum()


@functools.lru_cache(maxsize=16)
def heldout_data(tok, name: str, n: int, seed: int, n_ctx: int) -> TaskData:
    """`n` aligned, tokenized examples of a task whose prompts are all held out of training."""
    sample = TASKS[name].sample

    def draw(rng: random.Random) -> Example:
        while not is_heldout(name, (ex := sample(rng)).clean):
            pass
        return ex

    data, problems = tokenize(sample_examples(draw, tok, n, seed), tok, n_ctx, source=name)
    assert not problems, problems[:3]
    return data


@torch.no_grad()
def task_accuracy(model, tok, name: str, n: int, seed: int) -> float:
    """Share of `n` held-out examples where the best good token outscores the best bad one at the answer position."""
    data = heldout_data(tok, name, n, seed, model.config.n_positions)
    hits = 0
    for start in range(0, len(data), 128):
        d = data.select(range(start, min(start + 128, len(data))))
        logits = model(d.clean).logits[torch.arange(len(d)), d.positions[:, 0]]  # [batch, vocab]
        good = logits.gather(1, d.good.clamp(min=0)).masked_fill(d.good < 0, -1e9).amax(1)
        bad = logits.gather(1, d.bad.clamp(min=0)).masked_fill(d.bad < 0, -1e9).amax(1)
        hits += int((good > bad).sum())
    return hits / len(data)


def lr_at(step: int, r: Recipe, progress: float) -> float:
    """Linear warm-up, then cosine decay over the run's progress (steps or minutes)."""
    if step < r.warmup:
        return r.lr * (step + 1) / r.warmup
    return r.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def train_step(model, opt, tok, r: Recipe, rng: random.Random, progress: float) -> torch.Tensor:
    """One optimiser step on a fresh batch; returns the loss."""
    if r.boolean:
        ids, labels, pos = boolean_batch(tok, r.batch, rng, progress, r.n_ctx, r.p_instruction, r.demo_counts,
                                          r.curriculum_demos, r.p_offset)
        # labels[:, j] is the target of the output at position j (not the next input token), so no shift:
        # passing labels= to the model would shift them by one and train each target one word too early
        logits = model(input_ids=ids, position_ids=pos).logits
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
    else:
        ids, labels, weights = lm_batch(tok, r.tasks, r.batch, rng)
        loss = weighted_loss(model(input_ids=ids).logits, labels, weights)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return loss.detach()


def train(name: str, r: Recipe, out: Path, seed: int, deadline: float = math.inf, init: Path | None = None) -> dict:
    """Train one model (from scratch or from the weights in `init`), keep the best validation checkpoint, save it."""
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    out.mkdir(parents=True, exist_ok=True)
    save_tokenizer(build_tokenizer(corpus_words()), out, r.n_ctx)
    tok = AutoTokenizer.from_pretrained(str(out))
    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=r.n_ctx, n_embd=r.d_model, n_layer=r.n_layers,
                     n_head=r.n_heads, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                     bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model = GPT2LMHeadModel(cfg) if init is None else GPT2LMHeadModel.from_pretrained(str(init)).train()
    opt = torch.optim.AdamW(model.parameters(), lr=r.lr, weight_decay=0.01, betas=(0.9, 0.98))
    rng, t0, c0, best, history = random.Random(seed), time.time(), time.process_time(), (-1.0, None), []
    step = 0
    while True:
        # CPU time, not wall time: the machine is shared, so wall time says little about training done
        progress = (time.process_time() - c0) / (60 * r.minutes) if r.minutes else step / r.steps
        progress = max(progress, (time.time() - t0) / (deadline - t0))
        if progress >= 1:
            break
        for group in opt.param_groups:
            group["lr"] = lr_at(step, r, progress)
        loss = train_step(model, opt, tok, r, rng, progress)
        step += 1
        if step % r.eval_every == 0:
            model.eval()
            accs = {t: task_accuracy(model, tok, t, 200, EVAL_SEED) for t in r.tasks}
            model.train()
            history.append({"step": step, "minutes": round((time.time() - t0) / 60, 2),
                            "cpu_minutes": round((time.process_time() - c0) / 60, 2), "loss": round(loss.item(), 4),
                            **accs})
            print(json.dumps(history[-1]), flush=True)
            if sum(accs.values()) / len(accs) > best[0]:  # mean over tasks / prompt styles
                best = (sum(accs.values()) / len(accs), {k: v.clone() for k, v in model.state_dict().items()})
            if r.boolean:  # long runs: every validated checkpoint on disk, to test or ship one if the run is cut short
                model.save_pretrained(str(out / "checkpoints" / f"step{step}"))
            if min(accs.values()) >= r.stop_at:
                break
    if best[1] is not None:
        model.load_state_dict(best[1])
    return _finish(name, r, model, tok, out, (time.time() - t0, time.process_time() - c0), step, history, seed)


def _finish(name: str, r: Recipe, model, tok, out: Path, seconds: tuple[float, float], steps: int, history: list,
            seed: int) -> dict:
    """Save the model and its log with test accuracy on a fresh split."""
    model.eval()
    model.save_pretrained(str(out))
    test = {t: task_accuracy(model, tok, t, r.n_test, EVAL_SEED + 1) for t in r.tasks}
    log = {"model": name, "command": " ".join(["python", *sys.argv]), "seed": seed, "train_seconds": round(seconds[0], 1),
           "train_cpu_seconds": round(seconds[1], 1),
           "steps": steps, "threads": torch.get_num_threads(), "recipe": asdict(r),
           "n_params": sum(p.numel() for p in model.parameters()),
           "test_set": f"{r.n_test} held-out prompts (scripts/heldout.py), seed {EVAL_SEED + 1}",
           "test_accuracy": test, "history": history}
    (out / "train_log.json").write_text(json.dumps(log, indent=1))
    return log


def evaluate_saved(path: Path, r: Recipe) -> dict[str, float]:
    """Test accuracy of a saved model (offline), also written into its train_log.json."""
    from transformers import AutoTokenizer, GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(str(path), local_files_only=True).eval()
    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    test = {t: task_accuracy(model, tok, t, r.n_test, EVAL_SEED + 1) for t in r.tasks}
    log_path = path / "train_log.json"
    if log_path.exists():
        log = json.loads(log_path.read_text())
        log.update(test_accuracy=test, test_set=f"{r.n_test} held-out prompts (scripts/heldout.py), seed {EVAL_SEED + 1}")
        log_path.write_text(json.dumps(log, indent=1))
    return test


def _deadline(hhmm: str | None) -> float:
    if hhmm is None:
        return math.inf
    now = time.gmtime()
    h, m = map(int, hhmm.split(":"))
    return time.time() + ((h * 60 + m) - (now.tm_hour * 60 + now.tm_min)) * 60 - now.tm_sec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=[*RECIPES, "all"])
    parser.add_argument("--out", default=str(ROOT / "assets" / "models"))
    parser.add_argument("--minutes", type=float, default=None, help="override the time budget (Boolean model)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--deadline", default=None, help="stop training by this UTC wall time (HH:MM), whatever --minutes says")
    parser.add_argument("--init-from", default=None, help="continue training from this saved model folder")
    parser.add_argument("--eval-only", action="store_true", help="re-measure test accuracy of a saved model")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the machine is shared: one core per training process
    for name in RECIPES if args.model == "all" else [args.model]:
        r = RECIPES[name]
        if args.eval_only:
            print(json.dumps({"model": name, "test_accuracy": evaluate_saved(Path(args.out) / name, r)}), flush=True)
            continue
        if args.minutes is not None:
            r = Recipe(**{**asdict(r), "minutes": args.minutes})
        init = Path(args.init_from) if args.init_from else None
        log = train(name, r, Path(args.out) / name, args.seed, _deadline(args.deadline), init)
        print(json.dumps({k: log[k] for k in ("model", "train_seconds", "train_cpu_seconds", "steps", "test_accuracy")}),
              flush=True)


if __name__ == "__main__":
    main()
