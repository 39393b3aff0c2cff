"""engine.trace (the inspector's one-prompt forward) against transformers and against the fast masked forward."""

from __future__ import annotations

import pytest
import torch

from engine import trace as tr
from engine.weights import load_model


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    from transformers import GPT2Config, GPT2LMHeadModel

    # initializer_range 0.3 (not 0.02): outputs and effects large enough that a wrong one shows
    torch.manual_seed(3)
    cfg = GPT2Config(n_layer=3, n_head=4, n_embd=16, vocab_size=40, n_positions=16, bos_token_id=0,
                     eos_token_id=0, initializer_range=0.3)
    path = tmp_path_factory.mktemp("trace_gpt2")
    GPT2LMHeadModel(cfg).eval().save_pretrained(path)
    hf = GPT2LMHeadModel.from_pretrained(str(path), attn_implementation="eager").eval()
    return load_model(str(path), device="cpu"), hf


def _tokens(seed: int, n: int = 9) -> torch.Tensor:
    return torch.randint(0, 40, (n,), generator=torch.Generator().manual_seed(seed))


def test_full_model_attention_and_logits_match_transformers(pair) -> None:  # noqa: ANN001
    model, hf = pair
    tokens = _tokens(0)
    t = tr.trace(model, tokens)
    with torch.no_grad():
        out = hf(tokens[None], output_attentions=True)
    for layer, att in enumerate(out.attentions):
        torch.testing.assert_close(t.patterns[layer], att[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(tr.logits(model, t), out.logits[0], atol=1e-4, rtol=1e-4)


def test_circuit_trace_matches_the_fast_masked_forward(pair) -> None:  # noqa: ANN001
    model, _ = pair
    g = model.graph
    clean, corrupt = _tokens(1), _tokens(2)
    keep = (torch.rand(g.n_src, g.n_dst, generator=torch.Generator().manual_seed(4)) < 0.5) & g.real_edges
    t = tr.trace(model, clean, keep.float(), tr.trace(model, corrupt))
    with torch.no_grad():
        fast = model(clean[None], keep.float(), model.corrupt_cache(corrupt[None]))[0]
    torch.testing.assert_close(tr.logits(model, t), fast, atol=1e-4, rtol=1e-4)
    nothing = tr.trace(model, clean, torch.zeros_like(keep, dtype=torch.float), tr.trace(model, corrupt))
    torch.testing.assert_close(nothing.patterns, tr.trace(model, corrupt).patterns, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("circuit", [False, True])
def test_direct_effects_add_up_by_hand(pair, circuit: bool) -> None:  # noqa: ANN001
    """Writers' effects plus the biases' (computed here by hand) give the logit difference."""
    model, _ = pair
    g = model.graph
    clean, corrupt = _tokens(5), _tokens(6)
    keep = ((torch.rand(g.n_src, g.n_dst, generator=torch.Generator().manual_seed(7)) < 0.5) & g.real_edges).float()
    c = tr.trace(model, corrupt)
    t = tr.trace(model, clean, keep, c) if circuit else tr.trace(model, clean)
    pos, a, b = 8, 3, 11
    eff = tr.direct_effects(model, t, pos, a, b, keep if circuit else None, c)
    x = t.final[pos]
    scale = 1 / torch.sqrt((x - x.mean()).pow(2).mean() + model.cfg.norm_eps)
    d = model.W_U[:, a] - model.W_U[:, b]
    b_o = sum(blk.b_O for blk in model.blocks)
    rest = ((b_o - b_o.mean()) * scale * model.lnf_w) @ d + model.lnf_b @ d + model.b_U[a] - model.b_U[b]
    assert max(abs(v) for v in eff.values()) > 0.1  # effects of a size where a wrong one shows
    assert eff["rest"] == pytest.approx(float(rest), abs=1e-4)
    logits = tr.logits(model, t)[pos]
    assert sum(eff.values()) == pytest.approx(float(logits[a] - logits[b]), abs=1e-4)
    if circuit:  # a writer whose logits edge is cut reaches the logits with its corrupted output
        w = int((keep[:, -1] == 0).nonzero()[0])
        y = c.outputs[w, pos]
        assert eff[g.src_names[w]] == pytest.approx(float(((y - y.mean()) * scale * model.lnf_w) @ d), abs=1e-5)
