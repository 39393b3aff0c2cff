"""The embedded models in assets/models load offline with transformers and reach their test accuracy."""

from __future__ import annotations

import importlib
import importlib.util
import random
from pathlib import Path

import pytest
import torch

from engine.tasks import TASKS
from engine.tasks.base import tokenize
from engine.tasks.sampling import sample_examples

MODELS = Path(__file__).resolve().parents[2] / "assets" / "models"
# The targets: 95% on IOI, Greater-Than and Pronoun, 85% on Boolean Expressions in each prompt
# style (few-shot with the task's k, engine/tasks/data/boolean.json); measured numbers in assets/MODELS.md.
TARGETS = [("ioi-2l", "ioi", 0.95), ("ioi-2l", "ioi_t1", 0.95), ("greater-than-2l", "greater_than", 0.95),
           ("pronoun-2l", "gendered_pronoun", 0.95),
           ("boolean-4l", "boolean_instruction", 0.85), ("boolean-4l", "boolean_fewshot", 0.85)]
MODEL_NAMES = ["ioi-2l", "greater-than-2l", "pronoun-2l", "boolean-4l"]
N_TEST = 200
SEED = 20_000  # not a seed the training script uses


def _heldout_rule():
    """scripts/heldout.py: the prompts the training script never trains on (one in ten)."""
    spec = importlib.util.spec_from_file_location("heldout", MODELS.parents[1] / "scripts" / "heldout.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.is_heldout


def _load(name: str):
    from transformers import AutoTokenizer, GPT2LMHeadModel

    path = MODELS / name
    if not (path / "config.json").exists():
        pytest.fail(f"embedded model {name} is missing from {path}")
    return (GPT2LMHeadModel.from_pretrained(str(path), local_files_only=True).eval(),
            AutoTokenizer.from_pretrained(str(path), local_files_only=True))


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.mark.parametrize(("model_name", "task", "target"), TARGETS)
@torch.no_grad()
def test_embedded_model_reaches_target_accuracy(model_name, task, target):
    model, tok = _load(model_name)
    sample, is_heldout = TASKS[task].sample, _heldout_rule()

    def draw(rng: random.Random):
        while not is_heldout(task, (ex := sample(rng)).clean):
            pass
        return ex

    data, problems = tokenize(sample_examples(draw, tok, N_TEST, SEED), tok, model.config.n_positions)
    assert not problems
    logits = model(data.clean).logits[torch.arange(len(data)), data.positions[:, 0]]  # [N, vocab]
    good = logits.gather(1, data.good.clamp(min=0)).masked_fill(data.good < 0, -1e9).amax(1)
    bad = logits.gather(1, data.bad.clamp(min=0)).masked_fill(data.bad < 0, -1e9).amax(1)
    accuracy = (good > bad).float().mean().item()
    assert accuracy >= target, f"{model_name} on {task}: {accuracy:.3f} < {target}"


@pytest.mark.parametrize("model_name", MODEL_NAMES)
def test_embedded_model_is_small_and_word_level(model_name):
    model, tok = _load(model_name)
    size = sum(f.stat().st_size for f in (MODELS / model_name).iterdir())
    assert size < 8 * 2**20, f"{model_name} is {size / 2**20:.1f} MB"
    assert len(tok.encode(" Mary", add_special_tokens=False)) == 1
    prompt, answer = "So Evan is a really great friend, isn't", " he"
    ids = tok.encode(prompt + answer, add_special_tokens=False)
    assert ids == tok.encode(prompt, add_special_tokens=False) + tok.encode(answer, add_special_tokens=False)
    assert tok.decode(ids) == prompt + answer



def test_boolean_training_trains_each_label_at_its_own_word(monkeypatch):
    """scripts/train_embedded.py: the Boolean loss scores the output at word j against labels[:, j] (the label
    at a demo's `is` is the answer word after it). Passing the labels to the model, which shifts them by one
    word, held boolean-4l at 60-75% until it was found: a model that predicts every label at its own word
    must get a loss near 0 from train_step, and the labels must be the next words."""
    from transformers import AutoTokenizer

    monkeypatch.syspath_prepend(str(MODELS.parents[1] / "scripts"))
    train = importlib.import_module("train_embedded")
    tok = AutoTokenizer.from_pretrained(str(MODELS / "boolean-4l"), local_files_only=True)
    recipe = train.RECIPES["boolean-4l-v2"]
    ids, labels, _ = train.boolean_batch(tok, recipe.batch, random.Random(0), 1.0, recipe.n_ctx, recipe.p_instruction,
                                         recipe.demo_counts, recipe.curriculum_demos, recipe.p_offset)
    is_id = tok.get_vocab()[" is"]
    rows, cols = torch.nonzero((ids[:, :-1] == is_id) & (ids[:, 1:] != tok.pad_token_id), as_tuple=True)
    assert len(rows) > 0   # demos: `... is <answer> .`
    torch.testing.assert_close(labels[rows, cols], ids[rows, cols + 1])

    class Oracle(torch.nn.Module):   # logits that put the label of word j at word j
        def __init__(self) -> None:
            super().__init__()
            self.bias = torch.nn.Parameter(torch.zeros(()))

        def forward(self, input_ids, position_ids):  # noqa: ANN001, ANN202
            assert torch.equal(input_ids, ids)
            logits = torch.nn.functional.one_hot(labels.clamp(min=0), len(tok)).float() * 50 + self.bias
            return type("Out", (), {"logits": logits})()

    oracle = Oracle()
    loss = train.train_step(oracle, torch.optim.SGD(oracle.parameters(), lr=0.0), tok, recipe, random.Random(0), 1.0)
    assert float(loss) < 1e-6
