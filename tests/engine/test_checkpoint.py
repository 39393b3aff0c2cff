"""Per-layer activation checkpointing: same logits and gate gradients as the plain masked forward (GPT-2)."""

from __future__ import annotations

import pytest
import torch


@pytest.mark.parametrize("at_answer", [False, True])
def test_checkpointed_forward_and_gradients_are_exact(tiny_model, at_answer: bool) -> None:  # noqa: ANN001
    gen = torch.Generator().manual_seed(0)
    clean, corrupt = (torch.randint(0, tiny_model.cfg.d_vocab, (3, 7), generator=gen) for _ in range(2))
    cache = tiny_model.corrupt_cache(corrupt)
    base = torch.rand(tiny_model.graph.real_edges.shape, generator=gen)
    positions = torch.tensor([[6], [5], [6]]) if at_answer else None
    results = []
    for checkpoint in (False, True):
        keep = base.clone().requires_grad_()
        out = tiny_model(clean, keep, cache, positions, checkpoint=checkpoint)
        (out.log_softmax(-1)[..., :3] * torch.arange(3.0)).sum().backward()
        results.append((out.detach(), keep.grad))
    torch.testing.assert_close(results[1][0], results[0][0], atol=0, rtol=0)
    torch.testing.assert_close(results[1][1], results[0][1], atol=1e-6, rtol=1e-6)
    assert results[0][1].abs().sum() > 0


def test_checkpointing_without_grad_and_model_default(tiny_model) -> None:  # noqa: ANN001
    tokens = torch.randint(0, tiny_model.cfg.d_vocab, (2, 5), generator=torch.Generator().manual_seed(1))
    cache = tiny_model.corrupt_cache(tokens.flip(1))
    ones = tiny_model.graph.real_edges.float()
    assert tiny_model.checkpoint_layers is False
    with torch.no_grad():
        torch.testing.assert_close(tiny_model(tokens, ones, cache, checkpoint=True), tiny_model.reference_forward(tokens),
                                   atol=1e-5, rtol=1e-5)
