"""MaskedTransformer: one transformer whose every reader mixes clean and corrupted writer outputs edge by edge."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .checkpoint import gathered, is_sharded, recompute_in_backward
from .config import ModelConfig
from .graph import EdgeGraph


@dataclass(frozen=True, eq=False)
class CorruptCache:
    """What the ablated side of every edge contributes, computed once per batch without grad.

    outputs: [n_src, batch * pos * d_model]  each writer's output on the corrupted input (y~)
    resid:   [2 * n_layers + 1, batch * pos * d_model]  the corrupted residual where each layer's
             attention, each MLP, and the final norm read (sum of y~ so far plus constant biases)
    """

    outputs: Tensor
    resid: Tensor
    shape: tuple[int, int]  # (batch, pos)


class _Buffer:
    """Clean-minus-corrupted writer outputs, filled layer by layer, and their gradient (filled in backward)."""

    def __init__(self, neg_corrupt: Tensor) -> None:
        self.data = neg_corrupt   # rows become y - y~ as writers add y
        self.grad: Tensor | None = None

    def grad_rows(self) -> Tensor:
        if self.grad is None:
            self.grad = torch.zeros_like(self.data)
        return self.grad


class _Write(torch.autograd.Function):
    """Add writer outputs y into buffer rows; the returned token orders backward after every reader."""

    @staticmethod
    def forward(ctx, y: Tensor, prev: Tensor, buf: _Buffer, start: int, add: bool = True):  # noqa: ANN001, ANN205
        rows = y.shape[0]
        if add:  # False when a checkpointed layer is recomputed: its rows already hold y - y~
            buf.data[start:start + rows].add_(y.reshape(rows, -1))
        ctx.buf, ctx.start, ctx.shape = buf, start, y.shape
        return prev.new_empty(0)

    @staticmethod
    def backward(ctx, _grad_token: Tensor):  # noqa: ANN001, ANN205
        rows = ctx.shape[0]
        grad = ctx.buf.grad_rows()[ctx.start:ctx.start + rows].view(ctx.shape)
        return grad, _grad_token.new_zeros(0), None, None, None


class _Mix(torch.autograd.Function):
    """Reader inputs: the corrupted residual plus the kept share of every earlier writer's change.

    x[r] = base + sum_w keep_t[r, w] * delta[w], one matrix product for all readers of a layer.
    `at` (optional, long [M]) restricts to those flattened (batch * pos) rows, e.g. answer positions;
    then base is [M, d_model]. Backward accumulates into the buffer's gradient in place: no copies.
    """

    @staticmethod
    def forward(ctx, keep_t: Tensor, token: Tensor, base: Tensor, buf: _Buffer, n: int, at: Tensor | None):  # noqa: ANN001, ANN205
        d_model = base.shape[-1]
        delta = buf.data[:n]
        if at is not None:
            delta = delta.view(n, -1, d_model)[:, at].reshape(n, -1)
            base = base.reshape(-1)
        ctx.save_for_backward(keep_t, delta if at is not None else None)
        ctx.buf, ctx.n, ctx.at, ctx.d_model = buf, n, at, d_model
        return torch.addmm(base, keep_t, delta)

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # noqa: ANN001, ANN205
        keep_t, gathered = ctx.saved_tensors
        n, at, buf = ctx.n, ctx.at, ctx.buf
        delta = gathered if at is not None else buf.data[:n]
        grad_keep = grad_out @ delta.T if ctx.needs_input_grad[0] else None
        grad_rows = buf.grad_rows()[:n]
        if at is None:
            grad_rows.addmm_(keep_t.T, grad_out)
        else:
            g = (keep_t.T @ grad_out).view(n, -1, ctx.d_model)
            grad_rows.view(n, -1, ctx.d_model).index_add_(1, at, g)
        return grad_keep, grad_out.new_zeros(0), None, None, None, None


class _MixNorm(torch.autograd.Function):
    """`norm(_Mix(...))` for a layer's attention readers, keeping no reader input alive for backward.

    The [readers, batch, pos, d_model] mixed inputs are the largest activations of the masked forward;
    the norm's backward needs them, so backward recomputes them from the (unchanged) buffer rows with
    one more matrix product instead of keeping one copy per layer.
    """

    @staticmethod
    def forward(ctx, keep_t: Tensor, token: Tensor, base: Tensor, buf: _Buffer, n: int, norm):  # noqa: ANN001, ANN205
        ctx.save_for_backward(keep_t)
        ctx.buf, ctx.n, ctx.base, ctx.norm = buf, n, base, norm
        return norm(torch.addmm(base, keep_t, buf.data[:n]))

    @staticmethod
    def backward(ctx, grad_y: Tensor):  # noqa: ANN001, ANN205
        keep_t, = ctx.saved_tensors
        delta = ctx.buf.data[:ctx.n]
        with torch.enable_grad():
            x = torch.addmm(ctx.base, keep_t.detach(), delta).requires_grad_(True)
            grad_out, = torch.autograd.grad(ctx.norm(x), x, grad_y)
        del x
        grad_keep = grad_out @ delta.T if ctx.needs_input_grad[0] else None
        ctx.buf.grad_rows()[:ctx.n].addmm_(keep_t.T, grad_out)
        return grad_keep, grad_y.new_zeros(0), None, None, None, None


def _norm(x: Tensor, w: Tensor | None, b: Tensor | None, cfg: ModelConfig) -> Tensor:
    if cfg.norm == "layernorm":
        return F.layer_norm(x, (x.shape[-1],), w, b, cfg.norm_eps)
    if cfg.norm == "rmsnorm":  # computed in fp32, as Llama does
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + cfg.norm_eps)).to(x.dtype) * w
    return x


def _reader_norm(x: Tensor, shape: tuple[int, ...], w: Tensor, bias: Tensor, cfg: ModelConfig) -> Tensor:
    """[readers, batch * pos * d_model] -> normed [readers, batch, pos, d_model]."""
    return _norm(x.view(shape), w, bias, cfg)


def _rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate pairs (i, i + d/2) of the last dim, Llama's convention. x: [..., pos, d_head]."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


def _proj(x: Tensor, w: Tensor, bias: Tensor) -> Tensor:
    """Per-head projection. x: [heads or 1, batch, pos, d_model]; w: [heads, d_model, d_head] -> [batch, heads, pos, d_head]."""
    _, b, n, d = x.shape
    heads, _, dh = w.shape
    if x.shape[0] == 1:  # every head reads the same input: one fused matmul
        out = (x.reshape(b * n, d) @ w.transpose(0, 1).reshape(d, heads * dh) + bias.reshape(-1))
        return out.view(b, n, heads, dh).transpose(1, 2)
    out = torch.baddbmm(bias[:, None], x.reshape(heads, b * n, d), w)
    return out.view(heads, b, n, dh).transpose(0, 1)


class MaskedTransformer(nn.Module):
    """A decoder-only transformer with an edge-gated forward over a disentangled residual stream.

    `forward(tokens, keep, corrupt, positions)` is a pure function of its arguments: nothing per run
    is stored on the module, so one frozen instance can serve every session and thread.
    Parameters use TransformerLens names with stacked heads: W_Q [n_heads, d_model, d_head], ...
    """

    def __init__(self, cfg: ModelConfig, graph: EdgeGraph | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.graph = graph or EdgeGraph(cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, cfg.split_embeddings)
        self.tokenizer = None   # set by the loader; read-only afterwards
        self.name = "model"
        self.weights_hash = ""  # fingerprint of the loaded weights (weights.weights_hash), set by the loader
        self.bos_id: int | None = None  # prepended to every prompt when the model expects it
        self.checkpoint_layers = False  # default of forward(checkpoint=None); set by the loader, read-only afterwards
        d, h, kv, dh, dm = cfg.d_model, cfg.n_heads, cfg.kv_heads, cfg.d_head, cfg.d_mlp
        p = lambda *shape: nn.Parameter(torch.zeros(*shape))  # noqa: E731 — loaded from a checkpoint
        self.W_E = p(cfg.d_vocab, d)
        self.W_pos = p(cfg.n_ctx, d) if cfg.positions == "learned" else None
        self.blocks = nn.ModuleList()
        for _ in range(cfg.n_layers):
            blk = nn.Module()
            blk.ln1_w, blk.ln1_b = p(d), p(d)
            blk.W_Q, blk.W_K, blk.W_V = p(h, d, dh), p(kv, d, dh), p(kv, d, dh)
            blk.b_Q, blk.b_K, blk.b_V = p(h, dh), p(kv, dh), p(kv, dh)
            blk.W_O, blk.b_O = p(h, dh, d), p(d)
            blk.ln2_w, blk.ln2_b = p(d), p(d)
            blk.W_in, blk.b_in = p(d, dm), p(dm)
            blk.W_gate = p(d, dm) if cfg.mlp == "swiglu" else None
            blk.W_out, blk.b_out = p(dm, d), p(d)
            self.blocks.append(blk)
        self.lnf_w, self.lnf_b = p(d), p(d)
        self.W_U, self.b_U = p(d, cfg.vocab_out), p(cfg.vocab_out)

    @property
    def device(self) -> torch.device:
        return self.W_E.device

    @property
    def dtype(self) -> torch.dtype:
        return self.W_E.dtype

    # ---------------------------------------------------------------- pieces shared by both forwards
    def _embed(self, tokens: Tensor) -> Tensor:
        """[n_inputs, batch, pos, d_model]: the input writers' outputs."""
        if tokens.shape[1] > self.cfg.n_ctx:
            raise ValueError(f"sequence of {tokens.shape[1]} tokens; the model reads at most {self.cfg.n_ctx}")
        tok = self.W_E[tokens]
        if self.W_pos is None:
            return tok[None]
        pos = self.W_pos[: tokens.shape[1]].expand_as(tok)
        return torch.stack([tok, pos]) if self.cfg.split_embeddings else (tok + pos)[None]

    def _rope(self, n_pos: int) -> tuple[Tensor, Tensor] | None:
        if self.cfg.positions != "rotary":
            return None
        dh = self.cfg.d_head
        inv = 1.0 / self.cfg.rotary_base ** (torch.arange(0, dh, 2, device=self.device, dtype=torch.float32) / dh)
        ang = torch.outer(torch.arange(n_pos, device=self.device, dtype=torch.float32), inv)
        ang = torch.cat((ang, ang), dim=-1)
        return ang.cos().to(self.dtype), ang.sin().to(self.dtype)

    def _heads(self, blk: nn.Module, x: Tensor, rope: tuple | None) -> Tensor:
        """Per-head outputs [n_heads, batch, pos, d_model] from normed attention inputs.

        x: [1, batch, pos, d_model] (every reader sees the same input: the plain model) or
           [n_heads + 2 * kv_heads, batch, pos, d_model] (one input per q, k and v reader).
        """
        _, b, n, d = x.shape
        h, kv = self.cfg.n_heads, self.cfg.kv_heads
        if x.shape[0] == 1:
            q, k, v = _proj(x, blk.W_Q, blk.b_Q), _proj(x, blk.W_K, blk.b_K), _proj(x, blk.W_V, blk.b_V)
        else:  # one batched product; splitting the small outputs (not the inputs) keeps backward copy-free
            w = torch.cat((blk.W_Q, blk.W_K, blk.W_V))
            bias = torch.cat((blk.b_Q, blk.b_K, blk.b_V))
            q, k, v = _proj(x, w, bias).split((h, kv, kv), dim=1)
        if rope is not None:
            q, k = _rotary(q, *rope), _rotary(k, *rope)
        z = F.scaled_dot_product_attention(q, k, v, is_causal=self.cfg.is_causal, scale=self.cfg.attn_scale,
                                           enable_gqa=self.cfg.kv_heads != self.cfg.n_heads)
        z = z.transpose(0, 1).reshape(self.cfg.n_heads, b * n, -1)    # [heads, batch * pos, d_head]
        return torch.bmm(z, blk.W_O).view(self.cfg.n_heads, b, n, d)

    def _mlp(self, blk: nn.Module, x: Tensor) -> Tensor:
        x = _norm(x, blk.ln2_w, blk.ln2_b, self.cfg)
        pre = x @ blk.W_in + blk.b_in
        if self.cfg.mlp == "swiglu":
            act = F.silu(x @ blk.W_gate) * pre
        elif self.cfg.mlp == "relu":
            act = F.relu(pre)
        else:
            act = F.gelu(pre, approximate="tanh" if self.cfg.mlp == "gelu" else "none")
        return act @ blk.W_out + blk.b_out

    def _unembed(self, x: Tensor) -> Tensor:
        return _norm(x, self.lnf_w, self.lnf_b, self.cfg) @ self.W_U + self.b_U

    # ---------------------------------------------------------------- the plain model
    def _plain(self, tokens: Tensor, record: bool) -> tuple[Tensor, CorruptCache | None]:
        """The unmodified model; with record=True also every writer's output and the residuals readers see."""
        b, n = tokens.shape
        writers = self._embed(tokens)
        resid, outs, snaps = writers.sum(0), [writers] if record else [], []
        rope = self._rope(n)
        for blk in self.blocks:
            snaps.append(resid)
            with gathered(blk):
                x = _norm(resid, blk.ln1_w, blk.ln1_b, self.cfg)[None]
                heads = self._heads(blk, x, rope)
                resid = resid + heads.sum(0) + blk.b_O
                snaps.append(resid)
                mlp = self._mlp(blk, resid)
            resid = resid + mlp
            if record:
                outs += [heads, mlp[None]]
        snaps.append(resid)
        if not record:
            return resid, None
        flat = lambda t: t.reshape(t.shape[0], -1)  # noqa: E731
        cache = CorruptCache(torch.cat([flat(o) for o in outs]), flat(torch.stack(snaps)), (b, n))
        return resid, cache

    @torch.no_grad()
    def corrupt_cache(self, tokens: Tensor, ablation: str = "interchange") -> CorruptCache:
        """Writer outputs and residuals on the corrupted input (interchange ablation); `zero` keeps
        only the constant biases; `mean` averages each position over the batch of `tokens`."""
        _, cache = self._plain(tokens.to(self.device), record=True)
        assert cache is not None
        if ablation == "interchange":
            return cache
        b, n = cache.shape
        if ablation == "zero":
            outs = torch.zeros_like(cache.outputs)
        elif ablation == "mean":
            outs = cache.outputs.view(cache.outputs.shape[0], b, -1).mean(1, keepdim=True).expand(-1, b, -1)
            outs = outs.reshape(cache.outputs.shape[0], -1)
        else:
            raise ValueError(f"unknown ablation {ablation!r}; choose from ['interchange', 'mean', 'zero']")
        return CorruptCache(outs.contiguous(), self._resid_from(outs, cache), (b, n))

    def _resid_from(self, outs: Tensor, cache: CorruptCache) -> Tensor:
        """Residual snapshots for substituted writer outputs: their running sums plus the constant biases."""
        g = self.graph
        snaps, run = [], outs[: len(g.input_nodes)].sum(0)
        for layer, blk in enumerate(self.blocks):
            snaps.append(run)
            start = g.n_src_before(layer)
            with gathered(blk):
                bias = blk.b_O.repeat(cache.shape[0] * cache.shape[1])
            run = run + outs[start:start + self.cfg.n_heads].sum(0) + bias
            snaps.append(run)
            run = run + outs[start + self.cfg.n_heads]
        snaps.append(run)
        return torch.stack(snaps)

    def reference_forward(self, tokens: Tensor, positions: Tensor | None = None) -> Tensor:
        """Logits of the unmodified model: [batch, pos, vocab], or [batch, K, vocab] at `positions`."""
        tokens = tokens.to(self.device)
        resid, _ = self._plain(tokens, record=False)
        if positions is not None:
            resid = resid[torch.arange(tokens.shape[0], device=self.device)[:, None], positions.clamp(min=0)]
        return self._unembed(resid)

    # ---------------------------------------------------------------- the edge-masked model
    def _layer(self, layer: int, corrupt: CorruptCache, buf: _Buffer, rope: tuple | None,
               k_attn: Tensor, k_mlp: Tensor, token: Tensor, add: bool = True) -> Tensor:
        """One masked layer: mix its attention readers, write its heads, mix its MLP reader, write the MLP."""
        blk, cfg, (b, n) = self.blocks[layer], self.cfg, corrupt.shape
        n_src, h, d = self.graph.n_src_before(layer), cfg.n_heads, cfg.d_model
        norm = partial(_reader_norm, shape=(-1, b, n, d), w=blk.ln1_w, bias=blk.ln1_b, cfg=cfg)
        x = _MixNorm.apply(k_attn, token, corrupt.resid[2 * layer], buf, n_src, norm)
        heads = self._heads(blk, x, rope)
        token = _Write.apply(heads, token, buf, n_src, add)
        x = _Mix.apply(k_mlp, token, corrupt.resid[2 * layer + 1], buf, n_src + h, None)
        return _Write.apply(self._mlp(blk, x.view(b, n, d))[None], token, buf, n_src + h, add)

    def forward(self, tokens: Tensor, keep: Tensor | None = None, corrupt: CorruptCache | None = None,
                positions: Tensor | None = None, checkpoint: bool | None = None) -> Tensor:
        """Logits with every edge gated: reader r sees h~_r + sum_w keep[w, r] * (y_w - y~_w).

        Args:
            tokens:    long [batch, pos] clean input.
            keep:      [n_src, n_dst] gates in [0, 1] (1 = edge kept); None = the unmodified model.
            corrupt:   CorruptCache of the corrupted input (same shape); required when keep is given.
            positions: long [batch, K] positions to return logits for (-1 = padding slot); None = all.
            checkpoint: keep no layer activations for backward; recompute each layer there (engine/checkpoint.py).
                None = `self.checkpoint_layers` (chosen at load time). Always on for FSDP-sharded blocks.
        Returns:
            logits [batch, pos, vocab] or [batch, K, vocab].
        """
        if keep is None:
            return self.reference_forward(tokens, positions)
        if corrupt is None:
            raise ValueError("an edge-masked forward needs the corrupted run's cache (model.corrupt_cache)")
        tokens = tokens.to(self.device)
        b, n = tokens.shape
        if corrupt.shape != (b, n):
            raise ValueError(f"corrupted cache is for shape {corrupt.shape}, tokens are {(b, n)}")
        g, cfg, d = self.graph, self.cfg, self.cfg.d_model
        keep = keep.to(self.dtype)
        buf = _Buffer(corrupt.outputs.neg())
        token = _Write.apply(self._embed(tokens), keep.new_empty(0), buf, 0)
        rope = self._rope(n)
        checkpoint = self.checkpoint_layers if checkpoint is None else checkpoint
        for layer, blk in enumerate(self.blocks):
            n_src, cols, m_col = g.n_src_before(layer), g.attn_dst_slice(layer), g.mlp_dst_index(layer)
            k_attn, k_mlp = keep[:n_src, cols].T, keep[:n_src + cfg.n_heads, m_col:m_col + 1].T
            run = partial(self._layer, layer, corrupt, buf, rope)
            if checkpoint or is_sharded(blk):  # a sharded block's gathered weights must not outlive its use
                token = recompute_in_backward(run, partial(gathered, blk), k_attn, k_mlp, token)
            else:
                token = run(k_attn, k_mlp, token)
        final = corrupt.resid[-1].view(b * n, d)
        if positions is None:
            x = _Mix.apply(keep[:, -1:].T, token, final.reshape(-1), buf, g.n_src, None)
            return self._unembed(x.view(b, n, d))
        at = (torch.arange(b, device=self.device)[:, None] * n + positions.to(self.device).clamp(min=0)).flatten()
        x = _Mix.apply(keep[:, -1:].T, token, final[at], buf, g.n_src, at)
        return self._unembed(x.view(b, -1, d))
