"""The masked forward's residual machinery: the corrupted run's cached writer outputs, the buffer a forward
writes each writer's output into, and the custom autograd functions that mix clean and corrupted outputs edge by
edge for every reader (engine.model.MaskedTransformer drives them; nothing here holds per-run state)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .config import ModelConfig


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
