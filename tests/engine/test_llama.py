"""Llama-family converters: the masked forward matches transformers on small random Llama/Mistral/Qwen2 configs."""

from __future__ import annotations

import pytest
import torch

import engine.weights as weights

transformers = pytest.importorskip("transformers")

SMALL = dict(vocab_size=61, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
             max_position_embeddings=64, rms_norm_eps=1e-5)
CASES = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", dict(num_key_value_heads=4, rope_theta=500.0)),
    "llama-gqa": ("LlamaConfig", "LlamaForCausalLM", dict(num_key_value_heads=2, tie_word_embeddings=True)),
    "llama-mqa-headdim": ("LlamaConfig", "LlamaForCausalLM", dict(num_key_value_heads=1, head_dim=12)),
    "mistral-gqa": ("MistralConfig", "MistralForCausalLM", dict(num_key_value_heads=2, sliding_window=32)),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", dict(num_key_value_heads=4)),
    "qwen2-gqa-tied": ("Qwen2Config", "Qwen2ForCausalLM", dict(num_key_value_heads=2, tie_word_embeddings=True)),
}


def _save(tmp_path_factory: pytest.TempPathFactory, case: str) -> tuple[str, torch.nn.Module]:
    cfg_cls, model_cls, extra = CASES[case]
    torch.manual_seed(0)
    hf_cfg = getattr(transformers, cfg_cls)(**SMALL, **extra)
    hf = getattr(transformers, model_cls)(hf_cfg).eval()
    with torch.no_grad():  # random biases and norm weights, so a dropped or misplaced one shows
        for name, p in hf.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.normal_(1.0 if "norm" in name else 0.0, 0.3)
    folder = tmp_path_factory.mktemp(case)
    hf.save_pretrained(folder, safe_serialization=True)
    return str(folder), hf


@pytest.fixture(scope="module", params=sorted(CASES))
def pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    folder, hf = _save(tmp_path_factory, request.param)
    return weights.load_model(folder, device="cpu"), hf


def _tokens(seed: int) -> torch.Tensor:
    return torch.randint(0, SMALL["vocab_size"], (3, 11), generator=torch.Generator().manual_seed(seed))


def test_config_switches(pair) -> None:  # noqa: ANN001
    model, hf = pair
    cfg = model.cfg
    assert (cfg.norm, cfg.positions, cfg.mlp) == ("rmsnorm", "rotary", "swiglu")
    assert cfg.kv_heads == hf.config.num_key_value_heads
    assert model.graph.kv_heads == cfg.kv_heads
    assert not any(p.requires_grad for p in model.parameters())


def test_reference_forward_matches_transformers(pair) -> None:  # noqa: ANN001
    model, hf = pair
    tokens = _tokens(1)
    with torch.no_grad():
        expected = hf(tokens).logits
    torch.testing.assert_close(model.reference_forward(tokens), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("checkpoint", [False, True])
def test_masked_forward_invariants(pair, checkpoint: bool) -> None:  # noqa: ANN001
    model, hf = pair
    clean, corrupted = _tokens(2), _tokens(3)
    cache = model.corrupt_cache(corrupted)
    with torch.no_grad():
        want_clean, want_corrupted = hf(clean).logits, hf(corrupted).logits
    ones = model.graph.real_edges.float()
    got = model(clean, keep=ones, corrupt=cache, checkpoint=checkpoint)
    torch.testing.assert_close(got, want_clean, atol=1e-4, rtol=1e-4)
    got = model(clean, keep=torch.zeros_like(ones), corrupt=cache, checkpoint=checkpoint)
    torch.testing.assert_close(got, want_corrupted, atol=1e-4, rtol=1e-4)


def test_gradient_wrt_keep_is_finite_and_checkpoint_exact(pair) -> None:  # noqa: ANN001
    model, _ = pair
    clean, corrupted = _tokens(4), _tokens(5)
    cache = model.corrupt_cache(corrupted)
    gen = torch.Generator().manual_seed(0)
    base = torch.rand(model.graph.real_edges.shape, generator=gen) * model.graph.real_edges
    positions = torch.tensor([[10], [9], [10]])
    grads, outs = [], []
    for checkpoint in (False, True):
        keep = base.clone().requires_grad_()
        logits = model(clean, keep=keep, corrupt=cache, positions=positions, checkpoint=checkpoint)
        logits.log_softmax(-1)[..., 0].sum().backward()
        grads.append(keep.grad)
        outs.append(logits.detach())
    assert torch.isfinite(grads[0]).all() and grads[0].abs().sum() > 0
    torch.testing.assert_close(outs[1], outs[0], atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(grads[1], grads[0], atol=1e-5, rtol=1e-5)


def test_unsupported_rope_scaling_is_rejected() -> None:
    hf = {**SMALL, "model_type": "llama", "rope_parameters": {"rope_type": "yarn", "rope_theta": 1e4}}
    with pytest.raises(ValueError, match="unsupported rotary scaling"):
        weights.CONVERTERS["llama"](hf, {})


def test_rope_theta_from_old_and_new_configs() -> None:
    from engine.llama import llama_config
    old = llama_config({**SMALL, "model_type": "llama", "rope_theta": 1e6})
    new = llama_config({**SMALL, "model_type": "llama", "rope_parameters": {"rope_type": "default", "rope_theta": 5e5}})
    assert (old.rotary_base, new.rotary_base) == (1e6, 5e5)
    assert llama_config({**SMALL, "model_type": "mistral", "sliding_window": 16}).n_ctx == 16
