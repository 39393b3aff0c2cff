"""The key-padding mask of non-causal (Tracr) models: padded batches give every real position the outputs it
has alone, in the plain model, the edge-masked forward (all positions and answer positions), its gradient
and the batched forward; other models' configs and hashes are unchanged."""

from __future__ import annotations

import copy
import math
from dataclasses import replace

import pytest
import torch
from safetensors import safe_open

from engine.config import ModelConfig
from engine.methods.batched import batched_logits
from engine.tasks.tracr import circuit_outputs
from engine.tracr import load_ground_truth, load_reference, load_tracr

pytestmark = pytest.mark.usefixtures("one_thread")


def _unmasked(model):  # noqa: ANN001, ANN202
    """The same model without the key mask (the bug the mask fixes)."""
    model.cfg = ModelConfig.from_dict({**model.cfg.to_dict(), "key_pad_id": None})
    return model


@pytest.mark.parametrize("split", [False, True])
def test_padded_batch_equals_one_length_at_a_time(split: bool) -> None:
    """reverse's necessary circuit zero-ablates a0.h0's query and key, so the head attends uniformly:
    without the mask it would average in the padding of shorter inputs (checked: it does)."""
    model, _, _ = load_tracr("reverse", split_embeddings=split)
    ref = load_reference("reverse")
    necessary = load_ground_truth("reverse", model.graph, "necessary", "zero")
    alone = circuit_outputs(model, necessary, ref)             # one length per batch: no padding at all
    padded = circuit_outputs(model, necessary, ref, padded=True)
    assert float((alone - padded).abs().max()) < 1e-5
    assert model.cfg.key_pad_id == model.tokenizer.pad_id
    broken = circuit_outputs(_unmasked(load_tracr("reverse", split_embeddings=split)[0]), necessary, ref, padded=True)
    assert float((alone - broken).abs().max()) > 0.1


def test_answer_positions_and_gradient_see_the_mask() -> None:
    """The last layer's answer-position path builds its own attention mask; the gate gradient of a padded
    batch equals the sum of the per-length gradients (each example's loss is independent of the others)."""
    model, _, task = load_tracr("reverse")
    data = task.split("train").select(torch.arange(24))
    cache = model.corrupt_cache(data.corrupt, "zero")
    g = model.graph
    keep = (torch.rand(g.n_src, g.n_dst, generator=torch.Generator().manual_seed(0)) * g.real_edges).requires_grad_()
    full = model(data.clean, keep, cache)
    at = model(data.clean, keep, cache, data.positions)
    rows = torch.arange(len(data))[:, None]
    torch.testing.assert_close(at, full[rows, data.positions.clamp(min=0)])
    valid = (data.positions >= 0)[..., None]
    (at * valid).square().sum().backward()
    grad_padded, keep.grad = keep.grad.clone(), None
    for n in data.lengths.unique().tolist():
        i = (data.lengths == n).nonzero().flatten()
        sub = model.corrupt_cache(data.corrupt[i, :n], "zero")
        pos = data.positions[i].clamp(max=n - 1)
        out = model(data.clean[i, :n], keep, sub, pos)
        (out * valid[i]).square().sum().backward()
    torch.testing.assert_close(grad_padded, keep.grad, rtol=1e-4, atol=1e-4)


def test_batched_forward_masks_padding_too() -> None:
    model, _, task = load_tracr("reverse")
    data = task.split("validation")
    cache = model.corrupt_cache(data.corrupt, "zero")
    g = model.graph
    keeps = torch.rand(3, g.n_src, g.n_dst, generator=torch.Generator().manual_seed(1)) * g.real_edges
    out = batched_logits(model, data.clean, keeps, cache, data.positions)
    for c in range(3):
        torch.testing.assert_close(out[c], model(data.clean, keeps[c], cache, data.positions))


@pytest.mark.parametrize("causal", [False, True])
def test_attention_mask_against_a_written_out_softmax(tiny_model, causal: bool) -> None:  # noqa: ANN001
    """_attend_z with key_ok (and the causal triangle) = softmax over the allowed keys, written out here."""
    model = _unmasked(copy.deepcopy(tiny_model))
    model.cfg = replace(model.cfg, is_causal=causal, attn_scale=None)
    gen = torch.Generator().manual_seed(2)
    b, h, n, dh = 2, model.cfg.n_heads, 5, model.cfg.d_head
    q, k, v = (torch.randn(b, h, n, dh, generator=gen) for _ in range(3))
    key_ok = torch.tensor([[True, True, False, True, False], [True, False, True, True, True]])
    got = model._attend_z(q, k, v, None, key_ok).view(h, b, n, dh).transpose(0, 1)
    allowed = key_ok[:, None, None, :] & (torch.ones(n, n).tril().bool() if causal else torch.ones(n, n).bool())
    logits = (q @ k.transpose(-1, -2) / math.sqrt(dh)).masked_fill(~allowed, float("-inf"))
    torch.testing.assert_close(got, logits.softmax(-1) @ v)


def test_models_without_a_pad_id_keep_their_config_hash() -> None:
    """The shipped example circuit was saved before the field existed: its model's hash must not move."""
    from engine.weights import load_model
    from tests.engine.conftest import ROOT
    path = ROOT / "assets" / "circuits" / "ioi-2l--ioi.safetensors"
    with safe_open(str(path), "pt") as f:
        saved = f.metadata()["config_hash"]
    model = load_model("ioi-2l")
    assert model.cfg.key_pad_id is None and "key_pad_id" not in model.cfg.to_dict()
    assert model.cfg.hash() == saved
    tracr_cfg = load_tracr("hist")[0].cfg
    assert ModelConfig.from_dict(tracr_cfg.to_dict()) == tracr_cfg and tracr_cfg.key_pad_id == 4
