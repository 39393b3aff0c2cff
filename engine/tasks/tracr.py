"""Tracr tasks: varied-length inputs of a compiled program, and checks of circuits against tracr's own outputs."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..circuit import Circuit
from ..model import MaskedTransformer
from .base import Example, Task, TaskData


@dataclass(frozen=True, eq=False)
class TracrReference:
    """Every input of a shipped program and tracr's own outputs on it, stored at compile time.

    inputs:  long  [N, n_ctx]         BOS + tokens, right-padded with the pad token
    lengths: long  [N]                tokens per input, BOS included
    outputs: float [N, n_ctx, n_out]  tracr's residual read in the output space (0 at padding)
    """

    inputs: Tensor
    lengths: Tensor
    outputs: Tensor


def _by_length(ref: TracrReference) -> dict[int, Tensor]:
    return {int(n): (ref.lengths == n).nonzero().flatten() for n in ref.lengths.unique()}


def _pairs(ref: TracrReference, idx: Tensor, gen: torch.Generator) -> Tensor:
    """For each input in idx, another input of the same length (its position-aligned corruption)."""
    groups = _by_length(ref)
    out = torch.empty_like(idx)
    for i, j in enumerate(idx.tolist()):
        g = groups[int(ref.lengths[j])]
        out[i] = g[torch.randint(len(g), (1,), generator=gen)]
    return out


def _split(ref: TracrReference, idx: Tensor, gen: torch.Generator, info: dict) -> TaskData:
    """Inputs `idx` with same-length corruptions; every non-BOS position is scored."""
    categorical = info["output"] == "categorical"
    width = int(ref.lengths[idx].max())
    k = ref.inputs.shape[1] - 1
    cidx = _pairs(ref, idx, gen)
    clean, corrupt = ref.inputs[idx, :width], ref.inputs[cidx, :width]
    steps = torch.arange(1, k + 1)
    valid = steps[None] < ref.lengths[idx, None]
    positions = torch.where(valid, steps[None], -1)
    labels = ref.outputs[idx, 1:].argmax(-1) if categorical else torch.zeros(len(idx), k, dtype=torch.long)
    answers = torch.where(valid, labels, -1)
    no_bad = torch.full((len(idx), 1), -1, dtype=torch.long)
    return TaskData(clean, corrupt, ref.lengths[idx].clone(), positions, answers, answers[:, :1].clone(), no_bad,
                    _examples(ref, idx, cidx, info))


def _examples(ref: TracrReference, idx: Tensor, cidx: Tensor, info: dict) -> tuple[Example, ...]:
    """The same inputs as text, for display: tokens without BOS, and tracr's output as the answer."""
    vocab, labels = info["vocab"], info["labels"]
    inputs, lengths = ref.inputs.tolist(), ref.lengths.tolist()
    outputs = ref.outputs[:, 1:].argmax(-1).tolist() if labels else ref.outputs[:, 1:, 0].tolist()
    out = []
    for i, c in zip(idx.tolist(), cidx.tolist()):
        n = lengths[i]
        y = outputs[i][: n - 1]
        answer = " ".join(labels[j] for j in y) if labels else " ".join(f"{round(v, 4):g}" for v in y)
        out.append(Example(" ".join(vocab[t] for t in inputs[i][1:n]), " ".join(vocab[t] for t in inputs[c][1:n]),
                           answer))
    return tuple(out)


def tracr_task(name: str, model: MaskedTransformer, info: dict, ref: TracrReference, n_train: int = 512,
               seed: int = 0) -> Task:
    """Train/validation: inputs of uniformly drawn lengths; test: every input. Corruptions have the same length.

    Padding is tracr's pad token, which these programs' attention never selects (assets/tracr/README.md
    says what that means under zero ablation). The loss is squared error on the output read-out.
    """
    gen = torch.Generator().manual_seed(seed)
    groups, categorical = _by_length(ref), info["output"] == "categorical"
    lens = sorted(groups)

    def draw(n: int) -> Tensor:
        picks = [groups[lens[int(torch.randint(len(lens), (1,), generator=gen))]] for _ in range(n)]
        return torch.stack([g[torch.randint(len(g), (1,), generator=gen)][0] for g in picks])

    splits = {"train": _split(ref, draw(n_train), gen, info),
              "validation": _split(ref, draw(max(1, n_train // 4)), gen, info),
              "test": _split(ref, torch.arange(len(ref.lengths)), gen, info)}
    # metric: label accuracy, or for a numerical program "logit_diff" with good = column 0, i.e. its output value
    return Task(f"tracr-{name}", "accuracy" if categorical else "logit_diff", splits, info.get("description", ""),
                loss="mse",  # tracr's outputs are residual read-outs (0/1 labels, numbers), too flat for KL
                meta={"program": name, "output": info["output"], "model": model.name})


@torch.no_grad()
def circuit_outputs(model: MaskedTransformer, circuit: Circuit | None, ref: TracrReference,
                    ablation: str = "zero", seed: int = 0, padded: bool = False) -> Tensor:
    """The circuit's outputs [N, n_ctx - 1, n_out] on every reference input (non-BOS positions;
    0 at padding), run one length at a time so padding never enters attention, or with `padded`
    in one batch of every input padded to full width (what training batches look like; the same
    outputs when the model masks its pad keys)."""
    gen = torch.Generator().manual_seed(seed)
    out = torch.zeros(len(ref.lengths), ref.inputs.shape[1] - 1, model.cfg.vocab_out)
    groups = {ref.inputs.shape[1]: torch.arange(len(ref.lengths))} if padded else _by_length(ref)
    for n, idx in groups.items():
        clean = ref.inputs[idx, :n].to(model.device)
        if circuit is None:
            y = model.reference_forward(clean)
        else:
            corrupt = ref.inputs[_pairs(ref, idx, gen), :n].to(model.device)
            cache = model.corrupt_cache(corrupt, ablation)
            y = model(clean, circuit.keep.to(model.device, model.dtype), cache)
        out[idx, : n - 1] = y[:, 1:].float().cpu()
    if padded:   # zero at padding, as the reference
        out *= (torch.arange(1, ref.inputs.shape[1])[None] < ref.lengths[:, None])[..., None]
    return out


def mismatches(model: MaskedTransformer, circuit: Circuit | None, ref: TracrReference, categorical: bool,
               ablation: str = "zero", tol: float = 1e-3, padded: bool = False) -> int:
    """Reference inputs on which the circuit (None = full model) differs from tracr at some position:
    another argmax label (categorical) or an output further than `tol` from tracr's (numerical)."""
    got, want = circuit_outputs(model, circuit, ref, ablation, padded=padded), ref.outputs[:, 1:]
    valid = torch.arange(1, ref.inputs.shape[1])[None] < ref.lengths[:, None]
    if categorical:
        bad = got.argmax(-1) != want.argmax(-1)
    else:
        bad = (got - want).abs().amax(-1) > tol
    return int((bad & valid).any(-1).sum())


def necessary_edges(model: MaskedTransformer, derived: Circuit, ref: TracrReference, categorical: bool,
                    ablation: str = "zero", padded: bool = False) -> list[str]:
    """Edges of `derived` whose ablation alone (all other derived edges kept) changes some output
    (inputs run one length at a time, or padded into one batch)."""
    out = []
    for edge in derived.edges():
        i, j = derived.graph.edge_index(edge)
        keep = derived.keep.clone()
        keep[i, j] = False
        if mismatches(model, Circuit(derived.graph, keep.float(), keep), ref, categorical, ablation, padded=padded):
            out.append(edge)
    return out
