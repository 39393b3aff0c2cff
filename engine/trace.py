"""What a node does on one prompt: a readable edge-masked forward that keeps every head's attention pattern and
every writer's output, and the direct effect of each writer on the answer (final norm + unembedding).

Written for inspecting one prompt pair, one reader at a time, independent of the fast chunked forward in
model.py (tests compare the two, and this one with transformers' `output_attentions` for the full model).
Reader r of a circuit sees h~_r + sum_w keep[w, r] * (y_w - y~_w): the corrupted run's residual plus the
kept share of each earlier writer's clean-minus-corrupted output, as in the pruning forward.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .model import MaskedTransformer, _norm, _rotary


@dataclass(frozen=True, eq=False)
class Trace:
    """One prompt through the model (keep=None) or a circuit.

    outputs:   [n_src, pos, d_model]   each writer's output (inputs, heads without b_O, MLPs)
    patterns:  [n_layers, n_heads, pos, pos]  attention of each head: query position x key position
    resid:     [2 * n_layers + 1, pos, d_model]  the plain residual before each attention block, before each
               MLP and at the end (only for keep=None: a circuit has one input per reader instead)
    final:     [pos, d_model]          what the logits reader sees (before the final norm)
    """

    outputs: Tensor
    patterns: Tensor
    resid: Tensor | None
    final: Tensor


def _attention(model: MaskedTransformer, layer: int, xq: Tensor, xk: Tensor, xv: Tensor) -> tuple[Tensor, Tensor]:
    """Heads of one layer from normed-later reader inputs xq [H, pos, d], xk and xv [KV, pos, d].

    Returns (head outputs [H, pos, d_model], patterns [H, pos, pos])."""
    blk, cfg = model.blocks[layer], model.cfg
    norm = lambda x: _norm(x, blk.ln1_w, blk.ln1_b, cfg)  # noqa: E731
    q = torch.einsum("hpd,hde->hpe", norm(xq), blk.W_Q) + blk.b_Q[:, None]
    k = torch.einsum("gpd,gde->gpe", norm(xk), blk.W_K) + blk.b_K[:, None]
    v = torch.einsum("gpd,gde->gpe", norm(xv), blk.W_V) + blk.b_V[:, None]
    n = q.shape[1]
    if (rope := model._rope(n)) is not None:
        q, k = _rotary(q, *rope), _rotary(k, *rope)
    group = cfg.n_heads // cfg.kv_heads  # query head h reads key/value head h // group (transformers' repeat_kv)
    k, v = k.repeat_interleave(group, 0), v.repeat_interleave(group, 0)
    scale = cfg.attn_scale if cfg.attn_scale is not None else 1 / math.sqrt(cfg.d_head)
    scores = q @ k.transpose(1, 2) * scale
    if cfg.is_causal:
        scores = scores.masked_fill(torch.ones(n, n, dtype=torch.bool, device=q.device).triu(1), float("-inf"))
    pattern = scores.softmax(-1)
    return torch.einsum("hpe,hed->hpd", pattern @ v, blk.W_O), pattern


@torch.no_grad()
def trace(model: MaskedTransformer, tokens: Tensor, keep: Tensor | None = None,
          corrupt: Trace | None = None) -> Trace:
    """Run one prompt.

    Args:
        tokens: long [pos] one prompt.
        keep: [n_src, n_dst] gates (1 = edge kept) for a circuit; None = the full model.
        corrupt: trace(model, corrupted_tokens) (full model): required with `keep`.
    """
    g, cfg = model.graph, model.cfg
    tokens = tokens.to(model.device)
    n = tokens.shape[0]
    outs = model._embed(tokens[None])[:, 0].new_zeros(g.n_src, n, cfg.d_model)
    outs[: len(g.input_nodes)] = model._embed(tokens[None])[:, 0]
    patterns = outs.new_zeros(cfg.n_layers, cfg.n_heads, n, n)
    if keep is None:
        resid, snaps = outs[: len(g.input_nodes)].sum(0), []
    else:
        if corrupt is None or corrupt.resid is None:
            raise ValueError("a circuit's trace needs the full model's trace of the corrupted prompt")
        keep = keep.to(outs)

    def reader_input(col: int, n_writers: int, base: Tensor) -> Tensor:
        delta = outs[:n_writers] - corrupt.outputs[:n_writers]
        return base + torch.einsum("w,wpd->pd", keep[:n_writers, col], delta)

    h, kv = cfg.n_heads, cfg.kv_heads
    for layer, blk in enumerate(model.blocks):
        start = g.n_src_before(layer)
        if keep is None:
            snaps.append(resid)
            xq, xk, xv = resid.expand(h, n, -1), resid.expand(kv, n, -1), resid.expand(kv, n, -1)
        else:
            cols = range(g.attn_dst_slice(layer).start, g.attn_dst_slice(layer).stop)
            x = torch.stack([reader_input(c, start, corrupt.resid[2 * layer]) for c in cols])
            xq, xk, xv = x.split((h, kv, kv))
        heads, patterns[layer] = _attention(model, layer, xq, xk, xv)
        outs[start:start + h] = heads
        if keep is None:
            resid = resid + heads.sum(0) + blk.b_O
            snaps.append(resid)
            x_mlp = resid
        else:
            x_mlp = reader_input(g.mlp_dst_index(layer), start + h, corrupt.resid[2 * layer + 1])
        outs[start + h] = model._mlp(blk, x_mlp[None])[0]
        if keep is None:
            resid = resid + outs[start + h]
    if keep is None:
        snaps.append(resid)
        return Trace(outs, patterns, torch.stack(snaps), resid)
    return Trace(outs, patterns, None, reader_input(g.n_dst - 1, g.n_src, corrupt.resid[-1]))


def logits(model: MaskedTransformer, t: Trace) -> Tensor:
    """[pos, vocab]: the final norm and unembedding of what the logits reader sees."""
    return _norm(t.final, model.lnf_w, model.lnf_b, model.cfg) @ model.W_U + model.b_U


def direct_effects(model: MaskedTransformer, t: Trace, pos: int, answer: int, other: int,
                   keep: Tensor | None = None, corrupt: Trace | None = None) -> dict[str, float]:
    """Each writer's direct effect on logit[answer] - logit[other] at `pos`: its share of what the logits reader
    sees, through the final norm (its scale frozen at this prompt's value, as in direct logit attribution) and
    the unembedding. In a circuit a writer reaches the logits with its clean output where its edge to the logits
    is kept and its corrupted output where it is not.

    Returns:
        writer id -> effect, plus "rest" (biases and norm offset) so that the values add up to the logit difference.
    """
    g, cfg = model.graph, model.cfg
    x = t.final[pos]
    direction = model.W_U[:, answer] - model.W_U[:, other]
    if cfg.norm == "layernorm":
        scale = (x - x.mean()).pow(2).mean().add(cfg.norm_eps).rsqrt()
        lin = lambda y: ((y - y.mean(-1, keepdim=True)) * scale * model.lnf_w) @ direction  # noqa: E731
    elif cfg.norm == "rmsnorm":
        scale = x.float().pow(2).mean().add(cfg.norm_eps).rsqrt().to(x.dtype)
        lin = lambda y: (y * scale * model.lnf_w) @ direction  # noqa: E731
    else:
        lin = lambda y: y @ direction  # noqa: E731
    ys = t.outputs[:, pos]
    if keep is not None:
        k = keep[:, -1].to(ys)[:, None]
        ys = k * ys + (1 - k) * corrupt.outputs[:, pos]
    effects = lin(ys)
    total = float(logits(model, t)[pos, answer] - logits(model, t)[pos, other])
    out = {name: float(e) for name, e in zip(g.src_names, effects)}
    out["rest"] = total - float(effects.sum())
    return out
