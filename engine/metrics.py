"""Pure tensor metrics: KL, logit and probability difference, accuracy, exact match; METRICS registry."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor


def kl_div(ref_logits: Tensor, logits: Tensor, valid: Tensor) -> Tensor:
    """KL(p_ref || p) per example, nats, averaged over its valid answer positions.

    ref_logits, logits: [batch, K, vocab]; valid: bool [batch, K]. Returns [batch].
    """
    ref_lp = F.log_softmax(ref_logits.float(), dim=-1)
    lp = F.log_softmax(logits.float(), dim=-1)
    kl = (ref_lp.exp() * (ref_lp - lp)).sum(-1)                 # [batch, K]
    v = valid.to(kl.dtype)
    return (kl * v).sum(-1) / v.sum(-1).clamp(min=1)


def _gather(x: Tensor, ids: Tensor, fill: float) -> Tensor:
    """x: [batch, vocab]; ids: long [batch, G] with -1 padding -> [batch, G] with `fill` at padding."""
    out = x.gather(-1, ids.clamp(min=0))
    return out.masked_fill(ids < 0, fill)


def logit_diff(logits: Tensor, good: Tensor, bad: Tensor) -> Tensor:
    """Mean logit of the good tokens minus mean logit of the bad ones, per example. logits: [batch, vocab]."""
    def mean(ids: Tensor) -> Tensor:
        n = (ids >= 0).sum(-1).clamp(min=1)
        return _gather(logits.float(), ids, 0.0).sum(-1) / n
    has_bad = (bad >= 0).any(-1)
    return mean(good) - torch.where(has_bad, mean(bad), torch.zeros_like(mean(bad)))


def prob_diff(logits: Tensor, good: Tensor, bad: Tensor) -> Tensor:
    """P(good) - P(bad), summed over each set, per example."""
    p = torch.softmax(logits.float(), dim=-1)
    return _gather(p, good, 0.0).sum(-1) - _gather(p, bad, 0.0).sum(-1)


def accuracy(logits: Tensor, good: Tensor, bad: Tensor) -> Tensor:
    """1.0 where the best good token beats the best bad one (no bad tokens: the argmax is a good one)."""
    lg = logits.float()
    best_good = _gather(lg, good, float("-inf")).max(-1).values
    has_bad = (bad >= 0).any(-1)
    best_bad = torch.where(has_bad, _gather(lg, bad, float("-inf")).max(-1).values,
                           lg.masked_fill(_onehot(good, lg.shape[-1]), float("-inf")).max(-1).values)
    return (best_good > best_bad).float()


def _onehot(ids: Tensor, vocab: int) -> Tensor:
    mask = torch.zeros(ids.shape[0], vocab, dtype=torch.bool, device=ids.device)
    return mask.scatter(1, ids.clamp(min=0), ids >= 0)


def exact_match(logits: Tensor, answers: Tensor) -> Tensor:
    """1.0 where the argmax at every answer position is the answer token. logits [batch, K, vocab]."""
    hit = (logits.argmax(-1) == answers) | (answers < 0)
    return hit.all(-1).float()


METRICS: dict[str, Callable[[Tensor, Tensor, Tensor], Tensor]] = {
    "logit_diff": logit_diff,
    "prob_diff": prob_diff,
    "accuracy": accuracy,
}
"""Task metric name -> per-example function of (logits at the first answer position, good, bad)."""


def get_metric(name: str) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
    if name not in METRICS:
        raise KeyError(f"unknown metric {name!r}; choose from {sorted(METRICS)}")
    return METRICS[name]
