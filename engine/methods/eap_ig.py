"""EAP-IG as the field defines it: Hanna, Pezzelle & Belinkov, "Have Faith in Faithfulness" (2024),
https://arxiv.org/abs/2403.17806, as implemented in their EAP-IG library (hannamw/EAP-IG, `attribute.py`),
the one the MIB benchmark uses. Two variants, both scored against each writer's FIXED change
D_w = y_w(clean) - y~_w(corrupted):

* `eap-ig` (the library's EAP-IG-inputs, the paper's method): the input embeddings are interpolated,
  e(alpha) = e~ + alpha (e - e~), alpha = k / m for k = 0 .. m-1 (m = `steps`, 5 by default as in the paper;
  alpha = 1 is not a point, alpha = 0 is). The full model runs on e(alpha); the gradient of the metric at
  each reader r is averaged over the m points, and edge w -> r scores D_w . mean_k dM/dx_r(alpha_k)
  (summed over tokens, averaged over examples). Not complete: the sum of scores is not M(clean) - M(corrupted).
* `eap-ig-activations` (the library's IG over activations): one writer group at a time (the input, a layer's
  heads together, a layer's MLP) has its output replaced by y~ + alpha (y - y~), alpha = k / m for k = 1 .. m,
  everything after it recomputed from the clean prompt and no gradient through the replaced group; the
  gradient at every reader is averaged over all groups and points and multiplied by D_w as above.

Sign: like our EAP, `signed` is the contribution D_w . dM/dx_r (the library stores (y~ - y) . grad, the
negative); ranking by |score|, as the library does.

How it runs on our edge-masked forward (no hooks): reader r sees h~_r + sum_w keep[w, r] (y_w - y~_w), so
dM/dkeep[w, r] = (y_w - y~_w) . dM/dx_r. With a substituted "corrupted" side y~'_w = Y_w - D_w, where Y_w is
what writer w outputs in the interpolated run (a no-grad batched pass finds it), and gates that reproduce that
run (the input's edges at alpha for eap-ig; the replaced group's at alpha or 0 for activations), the reader
inputs are exactly the interpolated run's and dM/dkeep[w, r] = D_w . dM/dx_r: the library's per-step score.
tests/engine/test_eap_ig.py checks both against a plain autograd loop over the reader inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ..circuit import Circuit
from ..model import CorruptCache, MaskedTransformer
from ..residual import _chunked
from ..tasks.base import Task, TaskData
from .batched import batched_run
from .common import (Progress, StepCallback, batches, corrupted, kl_to_full, make_circuit, scoring_data,
                     select_top, signed_json, task_metric)
from .eap import EAPConfig

DEFINITIONS = {
    "eap-ig": "eap-ig = EAP-IG (Hanna et al. 2024; EAP-IG library's EAP-IG-inputs, as MIB): input embeddings interpolated "
              "corrupted->clean at alpha = k/m, k = 0..m-1; mean reader gradient x fixed clean-minus-corrupted "
              "writer output",
    "eap-ig-activations": "eap-ig-activations = EAP-IG over activations (EAP-IG library's ig-activations): each writer group's output "
                          "interpolated in turn at alpha = k/m, k = 1..m; mean reader gradient x fixed "
                          "clean-minus-corrupted writer output",
}


@dataclass(frozen=True)
class EAPIGConfig:
    """Hyper-parameters of eap-ig, eap-ig-activations and eap-ig-gates. Serialized into the Circuit's meta."""

    steps: int = 5                # interpolation points m (the EAP-IG paper uses 5)
    n_examples: int | None = 64   # examples of `split` scored (None = all)
    split: str = "train"
    batch_size: int = 16
    metric: Literal["task", "kl"] = "task"  # "task": the task metric; "kl": -KL(full || circuit)
    ablation: Literal["interchange", "zero", "mean"] = "interchange"  # eap-ig itself needs interchange
    sparsity: float = 0.9         # the returned circuit keeps the top (1 - sparsity) of edges by |score|

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        self.eap()

    def eap(self) -> EAPConfig:
        return EAPConfig(self.n_examples, self.split, self.batch_size, self.metric, self.ablation, self.sparsity)


def _substituted(model: MaskedTransformer, corrupt: CorruptCache, outs: Tensor) -> CorruptCache:
    """A corrupted side whose writer outputs are `outs` [n_src, tokens * d_model] (residuals rebuilt from them)."""
    b, n = corrupt.shape
    return CorruptCache(_chunked(outs, corrupt.chunk, model.cfg.d_model), model._resid_from(outs, b * n),
                        corrupt.shape, corrupt.chunk)


def _keep_gradient(model: MaskedTransformer, task: Task, cfg: EAPIGConfig, part: TaskData, keep: Tensor,
                   cache: CorruptCache, ref: Tensor | None) -> Tensor:
    """Sum over the examples of dM/dkeep (float64 [n_src, n_dst], on the CPU)."""
    with torch.enable_grad():
        keep = keep.to(model.device, model.dtype).detach().clone().requires_grad_(True)
        logits = model(part.clean.to(model.device), keep, cache, part.positions.to(model.device))
        value = -kl_to_full(task, ref, logits, part) if cfg.metric == "kl" else task_metric(task, logits, part)
        (grad,) = torch.autograd.grad(value.sum(), keep)
    return grad.detach().double().cpu()


def _groups(model: MaskedTransformer) -> list[range]:
    """Writer rows replaced together by eap-ig-activations: the input(s), then per layer its heads and its MLP."""
    g, h = model.graph, model.cfg.n_heads
    out = [range(0, len(g.input_nodes))]
    for layer in range(model.cfg.n_layers):
        start = g.n_src_before(layer)
        out += [range(start, start + h), range(start + h, start + h + 1)]
    return out


def _points(cfg: EAPIGConfig, variant: str, model: MaskedTransformer) -> list[tuple[range, float]]:
    """(writer rows interpolated, alpha) of every pass: the library's alphas for each variant."""
    if variant == "eap-ig":
        return [(range(0, len(model.graph.input_nodes)), k / cfg.steps) for k in range(cfg.steps)]
    return [(rows, k / cfg.steps) for rows in _groups(model) for k in range(1, cfg.steps + 1)]


def _batch_scores(model: MaskedTransformer, task: Task, cfg: EAPIGConfig, part: TaskData, variant: str,
                  progress: Progress, done: int) -> Tensor:
    """Sum over the examples of `part` of the mean per-point score D_w . dM/dx_r (float64 [n_src, n_dst])."""
    real = model.graph.real_edges.to(model.device, model.dtype)
    tokens, pos = part.clean.to(model.device), part.positions.to(model.device)
    cache = corrupted(model, part, cfg.ablation)
    with torch.no_grad():
        ref = model.reference_forward(tokens, pos) if cfg.metric == "kl" else None
    _, clean = batched_run(model, tokens, real[None], cache, pos)
    points, total = _points(cfg, variant, model), torch.zeros(real.shape, dtype=torch.float64)
    y_corrupt = cache.flat_outputs()
    for i, (rows, alpha) in enumerate(points):
        keep = real.clone()
        keep[rows.start:rows.stop] *= alpha
        _, run = batched_run(model, tokens, keep[None], cache, pos)
        outs = y_corrupt + run[0] - clean[0]       # Y - D: each writer's output in this run minus its fixed change
        grad = _keep_gradient(model, task, cfg, part, keep, _substituted(model, cache, outs), ref)
        if variant == "eap-ig-activations":
            # The group's rows come from the pass above (their readers are all after the group). The other rows
            # from a pass where the group's edges are closed and its substituted output is y~ + alpha D: readers
            # see the same values, but no gradient flows through the group, as in the library.
            keep[rows.start:rows.stop] = 0
            outs[rows.start:rows.stop] = y_corrupt[rows.start:rows.stop] + alpha * clean[0][rows.start:rows.stop]
            other = _keep_gradient(model, task, cfg, part, keep, _substituted(model, cache, outs), ref)
            other[rows.start:rows.stop] = grad[rows.start:rows.stop]
            grad = other
        total += grad
        progress(done + i + 1, alpha=alpha)
    return total / len(points)


def eap_ig_scores(model: MaskedTransformer, task: Task, cfg: EAPIGConfig, on_step: StepCallback | None = None,
                  variant: Literal["eap-ig", "eap-ig-activations"] = "eap-ig") -> Tensor:
    """Signed scores D_w . mean dM/dx_r, float [n_src, n_dst] (0 off the real edges), averaged over examples."""
    if variant == "eap-ig" and cfg.ablation != "interchange":
        raise ValueError(f"eap-ig interpolates the input embeddings of the corrupted and clean prompts, so it needs "
                         f"ablation='interchange' (got {cfg.ablation!r}); use eap-ig-activations or eap-ig-gates")
    data = scoring_data(task, cfg.split, cfg.n_examples)
    parts = list(batches(data, cfg.batch_size))
    per = len(_points(cfg, variant, model))
    progress = Progress(variant, per * len(parts), on_step)
    total = torch.zeros(model.graph.real_edges.shape, dtype=torch.float64)
    for i, part in enumerate(parts):
        total += _batch_scores(model, task, cfg, part, variant, progress, i * per)
    return (total / len(data)).float() * model.graph.real_edges


def _run(variant: str):  # noqa: ANN202
    def run(model: MaskedTransformer, task: Task, cfg: EAPIGConfig, on_step: StepCallback | None = None) -> Circuit:
        signed = eap_ig_scores(model, task, cfg, on_step, variant)
        if not bool(signed.abs().gt(0).any()):
            raise ValueError(f"{variant}: every attribution is zero; the corrupted prompts do not change the metric "
                             "(check the task's corruption or its good/bad tokens)")
        keep = select_top(model, signed.abs(), cfg.sparsity, variant)
        return make_circuit(model, signed.abs(), keep, variant, task, cfg,
                            {"signed_scores": signed_json(model, signed), "definition": DEFINITIONS[variant],
                             "score_meaning": "|D_w . mean_alpha dM/dx_r|; signed = D_w . mean dM/dx_r "
                                              "(the EAP-IG library stores the negative)"})
    run.__doc__ = f"{variant} circuit: scores = |signed|, the top (1 - sparsity) edges kept. {DEFINITIONS[variant]}"
    return run


run_eap_ig = _run("eap-ig")
run_eap_ig_activations = _run("eap-ig-activations")
