"""Many gate settings in one pass: the edge-masked forward with one keep matrix per candidate, no grad.

`MaskedTransformer.forward` takes one keep matrix for the whole batch. ACDC's candidate removals and the
points of a faithfulness curve each need their own, so this module runs C gate settings side by side
(batch C * B) with the corrupted cache shared. It mirrors `MaskedTransformer.forward` step by step and
reuses the model's own pieces (`_embed`, `_heads`, `_mlp`, `_unembed`); a test checks it against the
model's forward for every candidate, so a change there shows up here.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable

import torch
from torch import Tensor

from ..checkpoint import gathered
from ..model import CorruptCache, MaskedTransformer, _norm
from ..tasks.base import TaskData

log = logging.getLogger(__name__)


def _heads(model: MaskedTransformer, blk: torch.nn.Module, x: Tensor, rope: tuple | None,
           key_ok: Tensor | None = None) -> Tensor:
    """The model's per-head attention on stacked q/k/v reader inputs (the private signatures it has had)."""
    params = inspect.signature(model._heads).parameters
    if "key_ok" in params:
        return model._heads(blk, x, rope, key_ok)
    if len(params) == 3:
        return model._heads(blk, x, rope)
    h, kv = model.cfg.n_heads, model.cfg.kv_heads
    return model._heads(blk, x[:h], x[h:h + kv], x[h + kv:], rope)


def _mix(keep_cols: Tensor, delta: Tensor, base: Tensor) -> Tensor:
    """x[c, r] = base + sum_w keep[c, w, r] * delta[c, w]. keep_cols [C, n, R], delta [C, n, F] -> [C, R, F]."""
    c, _, r = keep_cols.shape
    return torch.baddbmm(base.expand(c, r, base.shape[-1]), keep_cols.transpose(1, 2), delta)


@torch.no_grad()
def batched_logits(model: MaskedTransformer, tokens: Tensor, keeps: Tensor, corrupt: CorruptCache,
                   positions: Tensor) -> Tensor:
    """Logits at `positions` for every gate setting.

    Args:
        tokens: long [B, P]; keeps: [C, n_src, n_dst] gates; corrupt: the corrupted cache of shape (B, P);
        positions: long [B, K] (-1 = padding slot).
    Returns:
        [C, B, K, vocab].
    """
    return batched_run(model, tokens, keeps, corrupt, positions)[0]


@torch.no_grad()
def batched_run(model: MaskedTransformer, tokens: Tensor, keeps: Tensor, corrupt: CorruptCache,
                positions: Tensor) -> tuple[Tensor, Tensor]:
    """batched_logits, and every writer's change y - y~ in each run: ([C, B, K, vocab], [C, n_src, B * P * d_model]).

    The input writers' rows are the unscaled embedding change (their gates scale it where readers mix)."""
    g, cfg = model.graph, model.cfg
    tokens = tokens.to(model.device)
    b, n = tokens.shape
    d, n_c, h = cfg.d_model, keeps.shape[0], cfg.n_heads
    keeps = keeps.to(model.device, model.dtype)
    delta = corrupt.flat_outputs().neg().unsqueeze(0).repeat(n_c, 1, 1)  # rows become y - y~ as writers run
    emb = model._embed(tokens)
    delta[:, : emb.shape[0]] += emb.reshape(emb.shape[0], -1)
    rope = model._rope(n)
    key_ok = model.key_mask(tokens) if hasattr(model, "key_mask") else None   # padding keys masked (Tracr)
    key_ok = None if key_ok is None else key_ok.repeat(n_c, 1)               # rows c * B + b, as x below
    for layer, blk in enumerate(model.blocks):
        start, cols, m = g.n_src_before(layer), g.attn_dst_slice(layer), g.mlp_dst_index(layer)
        with gathered(blk):   # FSDP-sharded blocks: all-gather, as the model's own forward does
            x = _mix(keeps[:, :start, cols], delta[:, :start], corrupt.resid[2 * layer])
            r = x.shape[1]
            x = _norm(x.view(n_c, r, b, n, d).transpose(0, 1).reshape(r, n_c * b, n, d), blk.ln1_w, blk.ln1_b, cfg)
            heads = _heads(model, blk, x, rope, key_ok)
            delta[:, start:start + h] += heads.reshape(h, n_c, -1).transpose(0, 1)
            x = _mix(keeps[:, :start + h, m:m + 1], delta[:, :start + h], corrupt.resid[2 * layer + 1])
            delta[:, start + h] += model._mlp(blk, x.view(n_c * b, n, d)).reshape(n_c, -1)
    x = _mix(keeps[:, :, -1:], delta, corrupt.resid[-1]).view(n_c, b, n, d)
    rows = torch.arange(b, device=model.device)[:, None]
    return model._unembed(x[:, rows, positions.to(model.device).clamp(min=0)]), delta


def chunk_size(model: MaskedTransformer, data: TaskData, budget_mb: float) -> int:
    """How many gate settings fit in `budget_mb` of activation buffer for `data` (at least 1)."""
    per = model.graph.n_src * data.clean.numel() * model.cfg.d_model * torch.finfo(model.dtype).bits / 8
    return max(1, int(budget_mb * 2**20 // (3 * per)))


def evaluate_keeps(model: MaskedTransformer, data: TaskData, keeps: Tensor, corrupt: CorruptCache,
                   fn: Callable[[Tensor], Tensor], budget_mb: float = 256) -> Tensor:
    """fn(logits [B, K, V]) -> [B] for every gate setting, chunked to the memory budget. Returns [C, B]."""
    step = chunk_size(model, data, budget_mb)
    out = []
    for s in range(0, keeps.shape[0], step):
        try:
            logits = batched_logits(model, data.clean, keeps[s:s + step], corrupt, data.positions)
        except (TypeError, AttributeError, RuntimeError) as e:  # the model's private pieces changed shape
            log.warning("batched forward unavailable (%s); evaluating gate settings one by one", e)
            with torch.no_grad():
                logits = [model(data.clean, k, corrupt, data.positions) for k in keeps[s:s + step].to(model.dtype)]
        out += [fn(lg) for lg in logits]
    return torch.stack(out)
