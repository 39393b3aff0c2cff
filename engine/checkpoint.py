"""Per-layer activation checkpointing for the masked forward, and gathering of FSDP-sharded blocks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import torch
from torch import Tensor, nn

LayerFn = Callable[..., Tensor]
"""`run(k_attn, k_mlp, token, add=True) -> token`: one masked layer (MaskedTransformer._layer, partly applied)."""


def is_sharded(module: nn.Module) -> bool:
    """True for a module wrapped by FSDP2's `fully_shard` (its parameters are shards between uses)."""
    return hasattr(module, "unshard") and hasattr(module, "reshard")


@contextmanager
def gathered(module: nn.Module) -> Iterator[None]:
    """The module's full parameters while inside; a no-op unless the module is FSDP-sharded.

    The masked forward reads block parameters directly instead of calling the block, so FSDP's own
    forward hooks never fire; this all-gathers the block explicitly and frees the copy on exit.
    """
    if not is_sharded(module):
        yield
        return
    module.unshard()
    try:
        yield
    finally:
        module.reshard()


class _Recompute(torch.autograd.Function):
    """Run a layer without saving activations; in backward, run it again with grad and backpropagate.

    torch.utils.checkpoint cannot be used as is: a masked layer *adds* its outputs into the shared
    clean-minus-corrupted buffer, so replaying it would add them twice. The replay here passes
    `add=False` (the buffer rows already hold this layer's outputs) and keeps everything else the
    same, so `_Mix.backward` still accumulates the readers' gradients into the buffer's gradient in
    place and `_Write.backward` still reads this layer's rows of it. The returned token orders this
    backward after every later reader's (they all consume the token chain), exactly as without
    checkpointing. Nothing is random in a layer, so the replay is bit-identical.
    """

    @staticmethod
    def forward(ctx, run: LayerFn, gather: Callable[[], AbstractContextManager], k_attn: Tensor,  # noqa: ANN001, ANN205
                k_mlp: Tensor, token: Tensor):
        with gather():
            run(k_attn, k_mlp, token)
        ctx.run, ctx.gather = run, gather
        ctx.save_for_backward(k_attn, k_mlp)
        return token.new_empty(0)

    @staticmethod
    def backward(ctx, grad_token: Tensor):  # noqa: ANN001, ANN205
        k_attn, k_mlp = (k.detach().requires_grad_(need) for k, need in zip(ctx.saved_tensors, ctx.needs_input_grad[2:4]))
        token = grad_token.new_empty(0).requires_grad_()
        with torch.enable_grad(), ctx.gather():
            out = ctx.run(k_attn, k_mlp, token, add=False)
            torch.autograd.backward(out, grad_token)
        return None, None, k_attn.grad, k_mlp.grad, grad_token.new_zeros(0)


def recompute_in_backward(run: LayerFn, gather: Callable[[], AbstractContextManager], k_attn: Tensor,
                          k_mlp: Tensor, token: Tensor) -> Tensor:
    """Checkpointed `run(k_attn, k_mlp, token)`: same result and gradients, one layer's activations alive at a time.

    Args:
        run:    the layer, writing its outputs into the forward's buffer (see _Recompute).
        gather: context factory that makes the layer's parameters whole (FSDP), e.g. `partial(gathered, block)`.
        k_attn: [n_attn_readers, n_src] gates of the layer's attention readers.
        k_mlp:  [1, n_src + n_heads] gates of its MLP reader.
        token:  empty tensor ordering backward after every later reader.
    Returns:
        the next order token.
    """
    return _Recompute.apply(run, gather, k_attn, k_mlp, token)
