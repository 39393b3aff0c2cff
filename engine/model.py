"""MaskedTransformer: one transformer whose every reader mixes clean and corrupted writer outputs edge by edge."""

from __future__ import annotations

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

    outputs: [n_chunks, n_src, chunk * d_model]  each writer's output on the corrupted input (y~),
             token chunk by token chunk: chunk c holds tokens c * chunk ... (batch * pos flattened), so
             the rows of one chunk are contiguous (the masked forward works a chunk at a time). The
             last chunk may be partly used. `flat_outputs()` gives the plain [n_src, batch * pos * d_model].
    resid:   [2 * n_layers + 1, batch * pos * d_model]  the corrupted residual where each layer's
             attention, each MLP, and the final norm read (sum of y~ so far plus constant biases)
    """

    outputs: Tensor
    resid: Tensor
    shape: tuple[int, int]  # (batch, pos)
    chunk: int              # tokens per chunk of `outputs`

    @property
    def spans(self) -> list[tuple[int, int]]:
        """(first, end) token of every chunk."""
        n = self.shape[0] * self.shape[1]
        return [(c, min(c + self.chunk, n)) for c in range(0, n, self.chunk)]

    def flat_outputs(self) -> Tensor:
        """[n_src, batch * pos * d_model] (a copy unless there is one chunk)."""
        n_c, n_src, width = self.outputs.shape
        n = self.shape[0] * self.shape[1] * (width // self.chunk)
        return self.outputs.transpose(0, 1).reshape(n_src, n_c * width)[:, :n]


def _chunked(flat: Tensor, chunk: int, d_model: int) -> Tensor:
    """[rows, tokens * d_model] -> [n_chunks, rows, chunk * d_model] (CorruptCache.outputs), zeros after the last token."""
    width = chunk * d_model
    out = flat.new_zeros(-(-flat.shape[1] // width), flat.shape[0], width)
    _put_rows(out, 0, flat)
    return out


def _put_rows(out: Tensor, start: int, flat: Tensor) -> None:
    """Copy flat [rows, tokens * d_model] into rows start.. of chunk-major `out`."""
    width = out.shape[2]
    for c in range(out.shape[0]):
        part = flat[:, c * width:(c + 1) * width]
        out[c, start:start + flat.shape[0], :part.shape[1]] = part


class Workspace:
    """Memory that masked forwards of one run reuse step after step (the buffer and its gradient).

    Fresh multi-hundred-MB allocations every step cost page faults on a CPU on each first touch.
    One workspace serves one forward + backward at a time: a second forward reuses the memory the
    first one's backward still needs, so give each run (thread) its own.
    """

    def __init__(self) -> None:
        self._tensors: dict[str, Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
        """An uninitialised tensor, the same memory as last time when shape, dtype and device match."""
        t = self._tensors.get(name)
        if t is None or t.shape != shape or t.dtype != dtype or t.device != device:
            self._tensors.pop(name, None)
            t = self._tensors[name] = torch.empty(shape, dtype=dtype, device=device)
        return t

    def like(self, name: str, t: Tensor) -> Tensor:
        return self.get(name, t.shape, t.dtype, t.device)


class _Buffer:
    """Clean-minus-corrupted writer outputs (chunk-major, as CorruptCache.outputs), filled layer by layer,
    and their gradient (filled in backward).

    With `overwrite` the corrupted outputs themselves become y - y~ as writers run (no copy: for a
    cache used only once).
    """

    def __init__(self, corrupt: CorruptCache, overwrite: bool = False, workspace: Workspace | None = None) -> None:
        self.corrupt, self.workspace = corrupt.outputs, workspace
        if overwrite:
            self.data = corrupt.outputs
        else:
            self.data = workspace.like("delta", self.corrupt) if workspace else torch.empty_like(self.corrupt)
        self.spans, self.chunk = corrupt.spans, corrupt.chunk
        self.d_model = corrupt.outputs.shape[2] // corrupt.chunk
        self.grad: Tensor | None = None

    def grad_rows(self) -> Tensor:
        if self.grad is None:
            self.grad = self.workspace.like("grad", self.data).zero_() if self.workspace else torch.zeros_like(self.data)
        return self.grad

    def cols(self, c: int) -> slice:
        """Chunk c's columns in a flat [.., tokens * d_model] tensor."""
        return slice(self.spans[c][0] * self.d_model, self.spans[c][1] * self.d_model)

    def delta(self, c: int, lo: int, hi: int) -> Tensor:
        """[hi - lo, chunk tokens * d_model]: y - y~ of writers lo..hi-1 in chunk c."""
        return self.data[c, lo:hi, :(self.spans[c][1] - self.spans[c][0]) * self.d_model]

    def delta_grad(self, c: int, lo: int, hi: int) -> Tensor:
        return self.grad_rows()[c, lo:hi, :(self.spans[c][1] - self.spans[c][0]) * self.d_model]

    def write(self, start: int, y: Tensor) -> None:
        """Rows start.. become y - y~; y: [rows, tokens * d_model]."""
        for c in range(len(self.spans)):
            self.write_chunk(c, start, y[:, self.cols(c)])

    def write_chunk(self, c: int, start: int, y: Tensor) -> None:
        """Rows start.. of chunk c become y - y~; y: [rows, chunk tokens * d_model]."""
        rows = slice(start, start + y.shape[0])
        torch.sub(y, self.corrupt[c, rows, :y.shape[1]], out=self.data[c, rows, :y.shape[1]])

    def written_grad(self, start: int, rows: int) -> Tensor:
        """[rows, tokens * d_model]: the gradient of writers start..start+rows-1 (backward)."""
        return torch.cat([self.delta_grad(c, start, start + rows) for c in range(len(self.spans))], dim=1)

    def tokens_of(self, at: Tensor) -> tuple[Tensor, Tensor]:
        """Chunk and in-chunk index of flat token indices."""
        return torch.div(at, self.chunk, rounding_mode="floor"), at % self.chunk


class _Write(torch.autograd.Function):
    """Write y - y~ of writers into their buffer rows; the returned token orders backward after every reader."""

    @staticmethod
    def forward(ctx, y: Tensor, prev: Tensor, buf: _Buffer, start: int, add: bool = True):  # noqa: ANN001, ANN205
        rows = y.shape[0]
        if add:  # False when a checkpointed layer is recomputed: its rows already hold y - y~
            buf.write(start, y.reshape(rows, -1))
        ctx.buf, ctx.start, ctx.shape = buf, start, y.shape
        return prev.new_empty(0)

    @staticmethod
    def backward(ctx, _grad_token: Tensor):  # noqa: ANN001, ANN205
        grad = ctx.buf.written_grad(ctx.start, ctx.shape[0]).view(ctx.shape)
        return grad, _grad_token.new_zeros(0), None, None, None


class _WriteHeads(torch.autograd.Function):
    """_Write of a layer's heads from their attention output z [heads, tokens, d_head]: each chunk's
    z @ W_O goes straight into the buffer rows as y - y~, and backward reads the rows' gradient chunk
    by chunk (no [heads, tokens, d_model] tensor either way). W_O is frozen: no gradient for it."""

    @staticmethod
    def forward(ctx, z: Tensor, w_o: Tensor, prev: Tensor, buf: _Buffer, start: int, add: bool = True):  # noqa: ANN001, ANN205
        h = z.shape[0]
        if add:  # False when a checkpointed layer is recomputed: its rows already hold y - y~
            for c, (c0, c1) in enumerate(buf.spans):
                buf.write_chunk(c, start, torch.bmm(z[:, c0:c1], w_o).view(h, -1))
        ctx.buf, ctx.start, ctx.w_o, ctx.shape = buf, start, w_o, z.shape
        return prev.new_empty(0)

    @staticmethod
    def backward(ctx, _grad_token: Tensor):  # noqa: ANN001, ANN205
        buf, h, w_t = ctx.buf, ctx.shape[0], ctx.w_o.transpose(1, 2)
        grad = w_t.new_empty(ctx.shape)
        for c, (c0, c1) in enumerate(buf.spans):
            grad[:, c0:c1] = torch.bmm(buf.delta_grad(c, ctx.start, ctx.start + h).view(h, c1 - c0, -1), w_t)
        return grad, None, _grad_token.new_zeros(0), None, None, None


class _WriteAt(torch.autograd.Function):
    """_Write for writers computed only at tokens `at` (unique flat indices; y: [rows, M, d_model]).

    The last layer when only answer positions are scored: its rows elsewhere are never read.
    """

    @staticmethod
    def forward(ctx, y: Tensor, prev: Tensor, buf: _Buffer, start: int, at: Tensor):  # noqa: ANN001, ANN205
        ci, ti = buf.tokens_of(at)
        rows = slice(start, start + y.shape[0])
        old = _by_token(buf.corrupt, buf)[ci, ti, rows]
        _by_token(buf.data, buf)[ci, ti, rows] = y.transpose(0, 1) - old
        ctx.buf, ctx.rows, ctx.at = buf, rows, at
        return prev.new_empty(0)

    @staticmethod
    def backward(ctx, _grad_token: Tensor):  # noqa: ANN001, ANN205
        ci, ti = ctx.buf.tokens_of(ctx.at)
        grad = _by_token(ctx.buf.grad_rows(), ctx.buf)[ci, ti, ctx.rows].transpose(0, 1)
        return grad, _grad_token.new_zeros(0), None, None, None


def _by_token(t: Tensor, buf: _Buffer) -> Tensor:
    """Chunk-major [n_chunks, n_src, chunk * d_model] viewed as [n_chunks, chunk, n_src, d_model]."""
    return t.view(len(buf.spans), -1, buf.chunk, buf.d_model).permute(0, 2, 1, 3)


class _Mix(torch.autograd.Function):
    """One reader's input: a base plus the kept share of the changes of writers lo..hi-1.

    x = base + keep_t @ delta[lo:hi]; keep_t is [1, hi - lo]; x and base are flat [tokens * d_model].
    `at` (optional, long [M]) restricts to those flattened (batch * pos) tokens, e.g. answer positions;
    then base is [M * d_model] and keep_t may have several rows (readers), each [M * d_model] out. Backward accumulates into the buffer's gradient in place and passes
    the gradient on to `base` when it has one (the MLP reader's base is what _AttnReaders mixed).
    """

    @staticmethod
    def forward(ctx, keep_t: Tensor, token: Tensor, base: Tensor, buf: _Buffer, lo: int, hi: int,  # noqa: ANN001, ANN205
                at: Tensor | None):
        ctx.save_for_backward(keep_t)
        ctx.buf, ctx.lo, ctx.hi, ctx.at = buf, lo, hi, at
        base = base.reshape(-1)
        if at is not None:
            return torch.addmm(base, keep_t, _gather(buf.data, buf, lo, hi, at))
        out = base.new_empty(1, base.shape[0])
        for c in range(len(buf.spans)):
            cols = buf.cols(c)
            torch.addmm(base[cols], keep_t, buf.delta(c, lo, hi), out=out[:, cols])
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # noqa: ANN001, ANN205
        keep_t, = ctx.saved_tensors
        lo, hi, at, buf = ctx.lo, ctx.hi, ctx.at, ctx.buf
        need_keep = ctx.needs_input_grad[0]
        if at is not None:
            grad_keep = grad_out @ _gather(buf.data, buf, lo, hi, at).T if need_keep else None
            g = (keep_t.T @ grad_out).view(hi - lo, -1, buf.d_model).transpose(0, 1)   # [M, rows, d]
            _by_token(buf.grad_rows(), buf)[:, :, lo:hi].index_put_(buf.tokens_of(at), g, accumulate=True)
        else:
            grad_keep = keep_t.new_zeros(keep_t.shape) if need_keep else None
            for c in range(len(buf.spans)):
                g = grad_out[:, buf.cols(c)]
                if grad_keep is not None:
                    grad_keep.addmm_(g, buf.delta(c, lo, hi).T)
                buf.delta_grad(c, lo, hi).addmm_(keep_t.T, g)
        grad_base = grad_out.sum(0) if ctx.needs_input_grad[2] else None
        return grad_keep, grad_out.new_zeros(0), grad_base, None, None, None, None


def _gather(data: Tensor, buf: _Buffer, lo: int, hi: int, at: Tensor) -> Tensor:
    """[hi - lo, M * d_model]: rows lo..hi-1 of chunk-major `data` at flat tokens `at`."""
    ci, ti = buf.tokens_of(at)
    return _by_token(data, buf)[ci, ti, lo:hi].transpose(0, 1).reshape(hi - lo, -1)


# Tokens per chunk of the masked forward (CorruptCache.chunk): a layer's [readers, chunk, d_model]
# inputs stay about this small, so on a CPU the mix, the norm and the projection (and their backward)
# run in cache instead of streaming whole [readers, tokens, d_model] tensors through memory several
# times; on a GPU one big chunk keeps the kernels large. Measured with bench/step_time.py.
CHUNK_BYTES = {"cpu": 8 * 2**20, "default": 1024 * 2**20}

# Bytes of mixed reader inputs kept from forward to backward (top layers first); the rest are mixed again.
KEEP_INPUT_BYTES = {"cpu": 512 * 2**20, "default": 0}


def kept_input_rows(cfg: ModelConfig, row_bytes: int, device_type: str, last_at: bool = True) -> dict[int, int]:
    """{layer: rows} of the layers whose _AttnReaders inputs are kept from forward to backward instead of
    mixed again: the top layers (not layer 0, whose mix is one cheap product) within the device's
    KEEP_INPUT_BYTES. rows = the layer's attention readers + the MLP row (k and v only in the last layer
    when only answer positions are scored, `last_at`); row_bytes = one row over every token."""
    budget, kept = KEEP_INPUT_BYTES.get(device_type, KEEP_INPUT_BYTES["default"]), {}
    for layer in range(cfg.n_layers - 1, 0, -1):
        last = last_at and layer == cfg.n_layers - 1
        rows = (2 * cfg.kv_heads if last else cfg.n_heads + 2 * cfg.kv_heads) + 1
        if rows * row_bytes > budget:
            break
        budget -= rows * row_bytes
        kept[layer] = rows
    return kept


class _AttnReaders(torch.autograd.Function):
    """q, k and v of one layer straight from the buffer, and the MLP reader's mix of the same writers.

    For R attention readers (q of every head, k and v of every kv group) reading writers 0..n-1:
        x_r = base + keep_t[r] @ delta[:n]          (the corrupted residual plus kept changes)
        out_r = norm(x_r) @ w[r] + bias[r]          (that reader's own q, k or v projection)
    and the MLP reader's part over the same writers, x_m = base_mlp + k_mlp @ delta[:n] (its own
    layer's heads are added by _Mix once they are written), as row R of the same matrix product:
    each pass reads the buffer once for all readers. Chunk by chunk, so the [R, tokens, d_model]
    inputs never exist whole; backward mixes each chunk again and accumulates into the buffer's
    gradient in place. With `kept` ([n_chunks, R + 1, chunk * d_model], MaskedTransformer._kept_inputs)
    the forward mixes into that memory and backward reuses it instead of mixing again (faster, more
    memory). The weights are frozen: no weight gradients.
    """

    @staticmethod
    def forward(ctx, keep_t: Tensor, k_mlp: Tensor, token: Tensor, base: Tensor, base_mlp: Tensor,  # noqa: ANN001, ANN205
                buf: _Buffer, n: int, norm, w: Tensor, bias: Tensor, kept: Tensor | None = None):
        R, d = keep_t.shape[0], buf.d_model
        kk = torch.cat((keep_t, k_mlp))
        out = w.new_empty(R, base.shape[0] // d, w.shape[-1])
        x_mlp = base_mlp.new_empty(base_mlp.shape[0])
        for c, (c0, c1) in enumerate(buf.spans):
            cols = buf.cols(c)
            x = _mix_chunk(kk, buf.delta(c, 0, n), base[cols], base_mlp[cols],
                           None if kept is None else kept[c, :, :(c1 - c0) * d])
            x_mlp[cols] = x[R]
            out[:, c0:c1] = torch.baddbmm(bias[:, None], norm(x[:R].view(R, c1 - c0, d)), w)
        ctx.save_for_backward(kk)
        ctx.buf, ctx.n, ctx.base, ctx.base_mlp, ctx.norm, ctx.w, ctx.kept = buf, n, base, base_mlp, norm, w, kept
        return out, x_mlp

    @staticmethod
    def backward(ctx, grad_out: Tensor, grad_mlp: Tensor | None):  # noqa: ANN001, ANN205
        kk, = ctx.saved_tensors
        buf, n, d = ctx.buf, ctx.n, ctx.buf.d_model
        R = kk.shape[0] - 1
        need_keep = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        grad_kk = kk.new_zeros(kk.shape) if need_keep else None
        w_t = ctx.w.transpose(1, 2)
        for c, (c0, c1) in enumerate(buf.spans):
            cols, delta = buf.cols(c), buf.delta(c, 0, n)
            if ctx.kept is None:
                x = _mix_chunk(kk, delta, ctx.base[cols], ctx.base_mlp[cols])
            else:   # kept from the forward: no second mix
                x = ctx.kept[c, :, :(c1 - c0) * d]
            with torch.enable_grad():
                xa = x[:R].view(R, c1 - c0, d).detach().requires_grad_(True)
                normed = ctx.norm(xa)
            grad_normed = torch.bmm(grad_out[:, c0:c1], w_t)
            x[:R] = torch.autograd.grad(normed, xa, grad_normed)[0].view(R, -1)   # x now holds the gradient
            del xa, normed
            if grad_mlp is None:
                x[R] = 0
            else:
                x[R] = grad_mlp[cols]
            if grad_kk is not None:
                grad_kk.addmm_(x, delta.T)
            buf.delta_grad(c, 0, n).addmm_(kk.T, x)
        grad_mlp_base = grad_mlp if ctx.needs_input_grad[4] else None
        return (None if grad_kk is None else grad_kk[:R], None if grad_kk is None else grad_kk[R:],
                grad_out.new_zeros(0), None, grad_mlp_base, None, None, None, None, None, None)


def _mix_chunk(kk: Tensor, delta: Tensor, base: Tensor, base_mlp: Tensor, out: Tensor | None = None) -> Tensor:
    """[R + 1, cols]: rows 0..R-1 = base + keep @ delta, row R = base_mlp + k_mlp @ delta (into `out` when given)."""
    if kk.shape[1] == 1 and out is None:   # layer 0 reads one writer (never kept): BLAS is slow at K=1
        x = kk * delta
    else:
        x = torch.mm(kk, delta, out=out)
    x[:-1] += base
    x[-1] += base_mlp
    return x


def _norm(x: Tensor, w: Tensor | None, b: Tensor | None, cfg: ModelConfig) -> Tensor:
    if cfg.norm == "layernorm":
        return F.layer_norm(x, (x.shape[-1],), w, b, cfg.norm_eps)
    if cfg.norm == "rmsnorm":  # computed in fp32 (as Llama does), fp64 kept for fp64 models (exact checks)
        xf = x if x.dtype == torch.float64 else x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + cfg.norm_eps)).to(x.dtype) * w
    return x


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

    def _heads(self, blk: nn.Module, x: Tensor, rope: tuple | None, key_ok: Tensor | None = None) -> Tensor:
        """Per-head outputs [n_heads, batch, pos, d_model] from normed attention inputs.

        x: [1, batch, pos, d_model] (every reader sees the same input: the plain model) or
           [n_heads + 2 * kv_heads, batch, pos, d_model] (one input per q, k and v reader).
        key_ok: bool [batch, pos] keys that may be attended to (key_mask); None = all.
        """
        h, kv = self.cfg.n_heads, self.cfg.kv_heads
        if x.shape[0] == 1:
            q, k, v = _proj(x, blk.W_Q, blk.b_Q), _proj(x, blk.W_K, blk.b_K), _proj(x, blk.W_V, blk.b_V)
        else:  # one batched product; splitting the small outputs (not the inputs) keeps backward copy-free
            q, k, v = _proj(x, *self._qkv_weights(blk)).split((h, kv, kv), dim=1)
        return self._attend(blk, q, k, v, rope, key_ok)

    @staticmethod
    def _qkv_weights(blk: nn.Module) -> tuple[Tensor, Tensor]:
        """W [n_heads + 2 * kv_heads, d_model, d_head] and bias of every q, k and v reader, in reader order."""
        return torch.cat((blk.W_Q, blk.W_K, blk.W_V)), torch.cat((blk.b_Q, blk.b_K, blk.b_V))

    def _attend(self, blk: nn.Module, q: Tensor, k: Tensor, v: Tensor, rope: tuple | None,
                key_ok: Tensor | None = None) -> Tensor:
        """q [batch, n_heads, pos, d_head], k and v [batch, kv_heads, pos, d_head] -> per-head outputs
        [n_heads, batch, pos, d_model]."""
        b, _, n, _ = q.shape
        z = self._attend_z(q, k, v, rope, key_ok)
        return torch.bmm(z, blk.W_O).view(self.cfg.n_heads, b, n, self.cfg.d_model)

    def _attend_z(self, q: Tensor, k: Tensor, v: Tensor, rope: tuple | None, key_ok: Tensor | None = None) -> Tensor:
        """Attention of every head before its output projection: [n_heads, batch * pos, d_head]."""
        b, _, n, _ = q.shape
        if rope is not None:
            q, k = _rotary(q, *rope), _rotary(k, *rope)
        mask = None
        if key_ok is not None:   # [batch, 1, query, key]
            mask = key_ok[:, None, None, :]
            if self.cfg.is_causal:
                mask = mask & torch.ones(n, n, dtype=torch.bool, device=q.device).tril()
        z = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=self.cfg.is_causal and mask is None,
                                           scale=self.cfg.attn_scale, enable_gqa=self.cfg.kv_heads != self.cfg.n_heads)
        return z.transpose(0, 1).reshape(self.cfg.n_heads, b * n, -1)

    def key_mask(self, tokens: Tensor) -> Tensor | None:
        """bool [batch, pos]: keys attention may read (not the config's `key_pad_id`); None when the model
        masks no keys. Tracr's compiled model masks its pad token this way, so padded batches of varied
        lengths give every real position the outputs it has alone."""
        return None if self.cfg.key_pad_id is None else tokens != self.cfg.key_pad_id

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
    def _plain(self, tokens: Tensor, record: bool, workspace: Workspace | None = None) -> tuple[Tensor, CorruptCache | None]:
        """The unmodified model; with record=True also every writer's output and the residuals readers see
        (the outputs in `workspace` memory when given)."""
        b, n = tokens.shape
        writers = self._embed(tokens)
        resid, snaps = writers.sum(0), []
        chunk, d = self._chunk_tokens(b * n), self.cfg.d_model
        outs = None
        if record:
            shape = (-(-b * n // chunk), self.graph.n_src, chunk * d)
            outs = workspace.get("corrupt", shape, self.dtype, self.device) if workspace else writers.new_empty(shape)
            outs[-1, :, (b * n - (shape[0] - 1) * chunk) * d:] = 0   # after the last token

        def put(start: int, y: Tensor) -> None:  # writer outputs [rows, batch, pos, d] into their chunk rows
            _put_rows(outs, start, y.reshape(y.shape[0], -1))

        rope, key_ok = self._rope(n), self.key_mask(tokens)
        if record:
            put(0, writers)
        for layer, blk in enumerate(self.blocks):
            snaps.append(resid)
            with gathered(blk):
                x = _norm(resid, blk.ln1_w, blk.ln1_b, self.cfg)[None]
                heads = self._heads(blk, x, rope, key_ok)
                resid = resid + heads.sum(0) + blk.b_O
                snaps.append(resid)
                mlp = self._mlp(blk, resid)
            resid = resid + mlp
            if record:
                start = self.graph.n_src_before(layer)
                put(start, heads)
                put(start + self.cfg.n_heads, mlp[None])
        snaps.append(resid)
        if not record:
            return resid, None
        return resid, CorruptCache(outs, torch.stack(snaps).reshape(len(snaps), -1), (b, n), chunk)

    def _chunk_tokens(self, n_tokens: int) -> int:
        """Tokens per chunk of the masked forward on this device (see CHUNK_BYTES), balanced so the
        last chunk is (nearly) full."""
        rows = self.cfg.n_heads + 2 * self.cfg.kv_heads + 1
        budget = CHUNK_BYTES.get(self.device.type, CHUNK_BYTES["default"])
        most = max(1, budget // (rows * self.cfg.d_model * self.dtype.itemsize))
        n_chunks = -(-n_tokens // most)
        return -(-n_tokens // n_chunks)

    def _kept_inputs(self, corrupt: CorruptCache, last_at: bool, workspace: Workspace | None) -> dict[int, Tensor]:
        """Memory for the mixed inputs kept for backward (kept_input_rows): {layer: [n_chunks, rows, chunk * d_model]}."""
        n_chunks, width = corrupt.outputs.shape[::2]
        kept = {}
        for layer, rows in kept_input_rows(self.cfg, n_chunks * width * self.dtype.itemsize, self.device.type,
                                           last_at).items():
            shape = (n_chunks, rows, width)
            kept[layer] = (workspace.get(f"kept{layer}", shape, self.dtype, self.device) if workspace
                           else torch.empty(shape, dtype=self.dtype, device=self.device))
        return kept

    @torch.no_grad()
    def corrupt_cache(self, tokens: Tensor, ablation: str = "interchange", workspace: Workspace | None = None) -> CorruptCache:
        """Writer outputs and residuals on the corrupted input (interchange ablation); `zero` keeps
        only the constant biases; `mean` averages each position over the batch of `tokens`.
        With a `workspace` the outputs reuse its memory: the cache is then valid until the next call."""
        _, cache = self._plain(tokens.to(self.device), record=True, workspace=workspace)
        assert cache is not None
        if ablation == "interchange":
            return cache
        b, n = cache.shape
        if ablation == "zero":
            outs = cache.outputs.new_zeros(self.graph.n_src, b * n * self.cfg.d_model)
        elif ablation == "mean":
            outs = cache.flat_outputs().view(self.graph.n_src, b, -1).mean(1, keepdim=True).expand(-1, b, -1)
            outs = outs.reshape(self.graph.n_src, -1)
        else:
            raise ValueError(f"unknown ablation {ablation!r}; choose from ['interchange', 'mean', 'zero']")
        return CorruptCache(_chunked(outs, cache.chunk, self.cfg.d_model), self._resid_from(outs, b * n),
                            (b, n), cache.chunk)

    def _resid_from(self, outs: Tensor, n_tokens: int) -> Tensor:
        """Residual snapshots for substituted writer outputs [n_src, tokens * d_model]: their running
        sums plus the constant biases."""
        g = self.graph
        snaps, run = [], outs[: len(g.input_nodes)].sum(0)
        for layer, blk in enumerate(self.blocks):
            snaps.append(run)
            start = g.n_src_before(layer)
            with gathered(blk):
                bias = blk.b_O.repeat(n_tokens)
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
               k_attn: Tensor, k_mlp: Tensor, token: Tensor, add: bool = True, kept: Tensor | None = None, *,
               key_ok: Tensor | None = None) -> Tensor:
        """One masked layer: its attention readers (and the MLP reader's share of earlier writers) in one
        pass over the buffer, its heads written, its MLP reader completed with them, the MLP written."""
        blk, cfg, (b, n) = self.blocks[layer], self.cfg, corrupt.shape
        n_src, h, kv = self.graph.n_src_before(layer), cfg.n_heads, cfg.kv_heads
        norm = partial(_norm, w=blk.ln1_w, b=blk.ln1_b, cfg=cfg)
        qkv, x_mlp = _AttnReaders.apply(k_attn, k_mlp[:, :n_src], token, corrupt.resid[2 * layer],
                                        corrupt.resid[2 * layer + 1], buf, n_src, norm, *self._qkv_weights(blk), kept)
        q, k, v = qkv.view(h + 2 * kv, b, n, -1).transpose(0, 1).split((h, kv, kv), dim=1)
        token = _WriteHeads.apply(self._attend_z(q, k, v, rope, key_ok), blk.W_O, token, buf, n_src, add)
        x = _Mix.apply(k_mlp[:, n_src:], token, x_mlp, buf, n_src, n_src + h, None)
        return _Write.apply(self._mlp(blk, x.view(b, n, cfg.d_model))[None], token, buf, n_src + h, add)

    def _last_layer_at(self, corrupt: CorruptCache, buf: _Buffer, rope: tuple | None, k_attn: Tensor,
                       k_mlp: Tensor, token: Tensor, at: Tensor, kept: Tensor | None = None,
                       key_ok: Tensor | None = None) -> Tensor:
        """The last layer when only tokens `at` (unique, flat) are scored: k and v at every token (queries
        attend to them), but queries, heads and the MLP only at `at`. Nothing else reads its outputs."""
        layer = self.cfg.n_layers - 1
        blk, cfg, (b, n), g = self.blocks[layer], self.cfg, corrupt.shape, self.graph
        n_src, h, kv, d = g.n_src_before(layer), cfg.n_heads, cfg.kv_heads, cfg.d_model
        norm = partial(_norm, w=blk.ln1_w, b=blk.ln1_b, cfg=cfg)
        kv_out, _ = _AttnReaders.apply(k_attn[h:], k_mlp[:, :n_src], token, corrupt.resid[2 * layer],
                                       corrupt.resid[2 * layer + 1], buf, n_src, norm,
                                       torch.cat((blk.W_K, blk.W_V)), torch.cat((blk.b_K, blk.b_V)), kept)
        k, v = kv_out.view(2 * kv, b, n, -1).transpose(0, 1).split((kv, kv), dim=1)   # [b, kv, n, d_head]
        base = corrupt.resid[2 * layer].view(b * n, d)[at]
        x_q = _Mix.apply(k_attn[:h], token, base, buf, 0, n_src, at).view(h, -1, d)
        q = torch.baddbmm(blk.b_Q[:, None], norm(x_q), blk.W_Q).transpose(0, 1)[:, :, None]  # [M, h, 1, d_head]
        bi, pi = torch.div(at, n, rounding_mode="floor"), at % n
        if rope is not None:
            q = _rotary(q, rope[0][pi][:, None, None], rope[1][pi][:, None, None])
            k = _rotary(k, *rope)
        mask = (torch.arange(n, device=at.device) <= pi[:, None]) if cfg.is_causal else torch.ones(
            len(at), n, dtype=torch.bool, device=at.device)
        if key_ok is not None:
            mask = mask & key_ok[bi]
        z = F.scaled_dot_product_attention(q, k[bi], v[bi], attn_mask=mask[:, None, None], scale=cfg.attn_scale,
                                           enable_gqa=kv != h)                            # [M, h, 1, d_head]
        heads = torch.bmm(z[:, :, 0].transpose(0, 1), blk.W_O)                            # [h, M, d]
        token = _WriteAt.apply(heads, token, buf, n_src, at)
        base = corrupt.resid[2 * layer + 1].view(b * n, d)[at]
        x = _Mix.apply(k_mlp, token, base, buf, 0, n_src + h, at)
        return _WriteAt.apply(self._mlp(blk, x.view(1, -1, d)), token, buf, n_src + h, at)

    def forward(self, tokens: Tensor, keep: Tensor | None = None, corrupt: CorruptCache | None = None,
                positions: Tensor | None = None, checkpoint: bool | None = None,
                overwrite_corrupt: bool = False, workspace: Workspace | None = None) -> Tensor:
        """Logits with every edge gated: reader r sees h~_r + sum_w keep[w, r] * (y_w - y~_w).

        Args:
            tokens:    long [batch, pos] clean input.
            keep:      [n_src, n_dst] gates in [0, 1] (1 = edge kept); None = the unmodified model.
            corrupt:   CorruptCache of the corrupted input (same shape); required when keep is given.
            positions: long [batch, K] positions to return logits for (-1 = padding slot); None = all.
            checkpoint: keep no layer activations for backward; recompute each layer there (engine/checkpoint.py).
                None = `self.checkpoint_layers` (chosen at load time). Always on for FSDP-sharded blocks.
            overwrite_corrupt: the caller never uses `corrupt` again, so its writer outputs are
                overwritten with the clean-minus-corrupted changes instead of copied (one less copy in memory).
            workspace: memory to reuse from the previous step of the same run (see Workspace).
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
        buf = _Buffer(corrupt, overwrite_corrupt, workspace)
        token = _Write.apply(self._embed(tokens), keep.new_empty(0), buf, 0)
        rope, key_ok = self._rope(n), self.key_mask(tokens)
        checkpoint = self.checkpoint_layers if checkpoint is None else checkpoint
        at = None if positions is None else (
            torch.arange(b, device=self.device)[:, None] * n + positions.to(self.device).clamp(min=0)).flatten()
        backward = torch.is_grad_enabled() and keep.requires_grad and not checkpoint
        kept = self._kept_inputs(corrupt, at is not None, workspace) if backward and not any(
            map(is_sharded, self.blocks)) else {}
        for layer, blk in enumerate(self.blocks):
            n_src, cols, m_col = g.n_src_before(layer), g.attn_dst_slice(layer), g.mlp_dst_index(layer)
            k_attn, k_mlp = keep[:n_src, cols].T, keep[:n_src + cfg.n_heads, m_col:m_col + 1].T
            run = partial(self._layer, layer, corrupt, buf, rope, key_ok=key_ok)
            if is_sharded(blk):  # a sharded block's gathered weights must not outlive its use
                token = recompute_in_backward(run, partial(gathered, blk), k_attn, k_mlp, token)
            elif at is not None and layer == cfg.n_layers - 1:  # only the scored tokens matter after here
                token = self._last_layer_at(corrupt, buf, rope, k_attn, k_mlp, token, torch.unique(at), kept.get(layer),
                                            key_ok)
            elif checkpoint:   # (the last layer above keeps little: activations at the scored tokens only)
                token = recompute_in_backward(run, partial(gathered, blk), k_attn, k_mlp, token)
            else:
                token = run(k_attn, k_mlp, token, kept=kept.get(layer))
        final = corrupt.resid[-1].view(b * n, d)
        if at is None:
            x = _Mix.apply(keep[:, -1:].T, token, final.reshape(-1), buf, 0, g.n_src, None)
            return self._unembed(x.view(b, n, d))
        x = _Mix.apply(keep[:, -1:].T, token, final[at], buf, 0, g.n_src, at)
        return self._unembed(x.view(b, -1, d))
