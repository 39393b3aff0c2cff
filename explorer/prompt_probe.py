"""One prompt pair through the model and a circuit: attention patterns, direct effects of a node, and each edge's
effect on the answer (exact single-edge ablation for small circuits, attribution otherwise); pure, no Streamlit."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from engine import Example, MaskedTransformer, Task, tokenize
from engine import trace as tr
from engine.circuit import Circuit

EXACT_MAX_EDGES = 300  # up to this many edges, each edge's effect is measured by removing it (one forward each)


@dataclass(frozen=True, eq=False)
class PromptPair:
    """clean, corrupt: long [pos]; the answer is predicted after position `pos`; `other` is what it is compared to."""

    clean: Tensor
    corrupt: Tensor
    pos: int
    answer: int
    other: int
    tokens: tuple[str, ...]  # the clean prompt's tokens, as text
    what: str                # how `other` was chosen, in words


def from_task(model: MaskedTransformer, task: Task, index: int, split: str = "test") -> PromptPair:
    """A task example: its answer vs its first 'bad' completion, else vs the full model's best other guess
    on the corrupted prompt."""
    data = task.split(split)
    n = int(data.lengths[index])
    clean, corrupt = data.clean[index, :n], data.corrupt[index, :n]
    pos, answer = int(data.positions[index, 0]), int(data.answers[index, 0])
    return _pair(model, clean, corrupt, pos, answer, int(data.bad[index, 0]) if data.bad.numel() else -1)


def typed(model: MaskedTransformer, clean: str, corrupt: str, answer: str, other: str = "") -> PromptPair:
    """A pair the user typed. Raises ValueError naming the problem (lengths differ, empty answer, too long)."""
    if model.tokenizer is None:
        raise ValueError("this model has no tokenizer, so typed prompts cannot be read")
    ex = Example(clean, corrupt, answer, good=(answer,), bad=(other,) if other.strip() else ())
    data, problems = tokenize([ex], model.tokenizer, model.cfg.n_ctx, model.bos_id, source="typed prompt")
    if problems:
        raise ValueError(problems[0][1])
    n = int(data.lengths[0])
    return _pair(model, data.clean[0, :n], data.corrupt[0, :n], int(data.positions[0, 0]), int(data.answers[0, 0]),
                 int(data.bad[0, 0]) if data.bad.numel() else -1)


def _pair(model: MaskedTransformer, clean: Tensor, corrupt: Tensor, pos: int, answer: int, bad: int) -> PromptPair:
    what = "its wrong completion"
    if bad < 0 or bad == answer:
        ranked = tr.logits(model, tr.trace(model, corrupt))[pos].argsort(descending=True).tolist()
        bad = next((t for t in ranked if t != answer), None)
        if bad is None:
            raise ValueError("the model has one output, so there is no other token to compare the answer with")
        what = "the full model's best other guess on the corrupted prompt"
    tok = model.tokenizer
    words = tuple(tok.decode([t]) for t in clean.tolist()) if tok is not None else tuple(map(str, clean.tolist()))
    return PromptPair(clean, corrupt, pos, answer, bad, words, what)


def token_text(model: MaskedTransformer, token: int) -> str:
    return model.tokenizer.decode([token]) if model.tokenizer is not None else str(token)


@dataclass(frozen=True, eq=False)
class Probe:
    full: tr.Trace
    circuit: tr.Trace
    corrupt: tr.Trace
    keep: Tensor


def probe(model: MaskedTransformer, pair: PromptPair, circuit: Circuit) -> Probe:
    c = tr.trace(model, pair.corrupt)
    keep = circuit.keep_float()
    return Probe(tr.trace(model, pair.clean), tr.trace(model, pair.clean, keep, c), c, keep)


def attention(p: Probe, layer: int, head: int, pair: PromptPair) -> list[dict]:
    """Rows for a heatmap: query and key token (position-numbered), weight in the full model and in the circuit."""
    names = [f"{i}: {w}" for i, w in enumerate(pair.tokens)]
    out = []
    for q in range(len(names)):
        for k in range(len(names)):
            for who, t in (("full model", p.full), ("circuit", p.circuit)):
                out.append({"query": names[q], "key": names[k], "model": who,
                            "weight": float(t.patterns[layer, head, q, k])})
    return out


def direct_effect(model: MaskedTransformer, p: Probe, pair: PromptPair, node: str) -> tuple[float, float]:
    """(full model, circuit): the node's direct effect on logit[answer] - logit[other]."""
    full = tr.direct_effects(model, p.full, pair.pos, pair.answer, pair.other)
    circ = tr.direct_effects(model, p.circuit, pair.pos, pair.answer, pair.other, p.keep, p.corrupt)
    return full[node], circ[node]


def logit_diff(model: MaskedTransformer, pair: PromptPair, keep: Tensor) -> float:
    """logit[answer] - logit[other] at the pair's position, the circuit `keep` run by the fast masked forward."""
    with torch.no_grad():
        out = model(pair.clean[None], keep, model.corrupt_cache(pair.corrupt[None]),
                    positions=torch.tensor([[pair.pos]]))[0, 0]
    return float(out[pair.answer] - out[pair.other])


def edge_effects(model: MaskedTransformer, pair: PromptPair, circuit: Circuit,
                 exact_max: int = EXACT_MAX_EDGES) -> tuple[dict[str, float], str]:
    """Each kept edge's effect on this prompt's logit difference, and how it was measured.

    "exact": the circuit's logit difference minus that of the circuit without the edge (one forward per edge).
    "attribution": the gradient of the logit difference with respect to the edge's gate, at the circuit
    (the first-order estimate of the same; one forward and backward for every edge).
    """
    keep = circuit.keep_float()
    corrupt = model.corrupt_cache(pair.corrupt[None])
    at = torch.tensor([[pair.pos]])
    edges = circuit.keep.nonzero().tolist()
    ids = [circuit.graph.edge_id(i, j) for i, j in edges]
    if len(edges) <= exact_max:
        base = logit_diff(model, pair, keep)
        out = {}
        for e, (i, j) in zip(ids, edges):
            k = keep.clone()
            k[i, j] = 0.0
            out[e] = base - logit_diff(model, pair, k)
        return out, "exact"
    keep = keep.clone().requires_grad_(True)
    with torch.enable_grad():
        logits = model(pair.clean[None], keep, corrupt, positions=at)[0, 0]
        (logits[pair.answer] - logits[pair.other]).backward()
    grad = keep.grad
    return {e: float(grad[i, j]) for e, (i, j) in zip(ids, edges)}, "attribution"
