"""MaskedTransformer: one transformer whose every reader mixes clean and corrupted writer outputs edge by edge."""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .checkpoint import gathered, is_sharded, recompute_in_backward
from .config import ModelConfig
from .graph import EdgeGraph
from .residual import (CHUNK_BYTES, CorruptCache, Workspace, _AttnReaders, _Buffer, _chunked, _Mix, _put_rows,
                       _Write, _WriteAt, _WriteHeads, kept_input_rows)


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
