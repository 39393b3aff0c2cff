"""EAP-IG as the EAP-IG library defines it, against a plain autograd loop written here.

The reference is a textbook GPT-2 forward on the tiny model's weights in which every reader's input is the
residual plus a zero "tap" tensor: autograd's gradient at a tap is dM/dx_r. It interpolates the input
embeddings (alpha = k/m, k = 0..m-1) or one writer group's output (k = 1..m, no gradient through it),
averages, and multiplies by each writer's fixed clean-minus-corrupted output, as hannamw/EAP-IG's
`get_scores_eap_ig` / `get_scores_ig_activations` do. It shares nothing with the engine's masked forward.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from engine.methods import get_method, make_config
from engine.methods.common import scoring_data
from engine.methods.eap_ig import EAPIGConfig, eap_ig_scores
from engine.methods.eap_ig_gates import eap_ig_gates_scores
from engine.tasks.base import Task

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model64(tiny_model):  # noqa: ANN001, ANN201
    return copy.deepcopy(tiny_model).double()


def _ln(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, (x.shape[-1],), w, b, 1e-5)


def _forward(m, tokens, positions, emb=None, fixed=None):  # noqa: ANN001, ANN202
    """Plain GPT-2 forward. Returns (logits at positions [B, K, V], writer outputs {row: [B, P, d]},
    taps {dst index: zero tensor whose gradient is dM/dx_r}). `fixed` = (first row, n rows, [n, B, P, d])
    replaces those writers' outputs by constants."""
    g, cfg = m.graph, m.cfg
    b, n = tokens.shape
    outs, taps = {}, {}

    def tap(name: str, x: torch.Tensor) -> torch.Tensor:
        t = torch.zeros_like(x, requires_grad=True)
        taps[g.dst_index(name)] = t
        return x + t

    def writer(row: int, y: torch.Tensor) -> torch.Tensor:
        if fixed is not None and fixed[0] <= row < fixed[0] + fixed[1]:
            y = fixed[2][row - fixed[0]]
        outs[row] = y
        return y

    e = m.W_E[tokens] + m.W_pos[:n] if emb is None else emb
    resid = writer(0, e)
    mask = torch.ones(n, n, dtype=torch.bool).tril()
    for layer, blk in enumerate(m.blocks):
        start, heads = g.n_src_before(layer), []
        for h in range(cfg.n_heads):
            q, k, v = ((_ln(tap(f"a{layer}.h{h}<{c}>", resid), blk.ln1_w, blk.ln1_b) @ w[h] + bias[h])
                       for c, w, bias in (("q", blk.W_Q, blk.b_Q), ("k", blk.W_K, blk.b_K), ("v", blk.W_V, blk.b_V)))
            att = (q @ k.transpose(-1, -2) / math.sqrt(cfg.d_head)).masked_fill(~mask, float("-inf")).softmax(-1)
            heads.append(writer(start + h, att @ v @ blk.W_O[h]))
        resid = resid + sum(heads) + blk.b_O
        x = _ln(tap(f"m{layer}", resid), blk.ln2_w, blk.ln2_b)
        resid = resid + writer(start + cfg.n_heads, F.gelu(x @ blk.W_in + blk.b_in, approximate="tanh") @ blk.W_out
                               + blk.b_out)
    x = tap("logits", resid)[torch.arange(b)[:, None], positions]
    return _ln(x, m.lnf_w, m.lnf_b) @ m.W_U + m.b_U, outs, taps


def _logit_diff(logits, data):  # noqa: ANN001, ANN202
    lg = logits[:, 0]
    return (lg.gather(1, data.good) - lg.gather(1, data.bad)).sum()


def _scores(m, outs_diff, taps, value):  # noqa: ANN001, ANN202
    """sum over tokens of D_w . dM/dx_r for every real edge."""
    grads = dict(zip(taps, torch.autograd.grad(value, list(taps.values()), allow_unused=True)))
    s = torch.zeros(m.graph.n_src, m.graph.n_dst, dtype=torch.float64)
    for (w, r) in m.graph.real_edges.nonzero().tolist():
        s[w, r] = 0.0 if grads[r] is None else (outs_diff[w] * grads[r]).sum()   # None: cut off by a fixed group
    return s


def reference_eap_ig(m, data, steps: int, variant: str, k_first: int | None = None) -> torch.Tensor:  # noqa: ANN001
    with torch.no_grad():
        _, clean, _ = _forward(m, data.clean, data.positions)
        _, corrupt, _ = _forward(m, data.corrupt, data.positions)
    diff = {w: clean[w] - corrupt[w] for w in clean}
    total, count = torch.zeros(m.graph.n_src, m.graph.n_dst, dtype=torch.float64), 0
    if variant == "eap-ig":
        for k in range(steps) if k_first is None else range(k_first, k_first + steps):
            emb = corrupt[0] + (k / steps) * diff[0]
            logits, _, taps = _forward(m, data.clean, data.positions, emb=emb)
            total += _scores(m, diff, taps, _logit_diff(logits, data))
            count += 1
    else:
        g, h = m.graph, m.cfg.n_heads
        groups = [(0, 1)] + [(g.n_src_before(L) + o, c) for L in range(m.cfg.n_layers) for o, c in ((0, h), (h, 1))]
        for first, size in groups:
            for k in range(1, steps + 1):
                values = torch.stack([corrupt[r] + (k / steps) * diff[r] for r in range(first, first + size)])
                logits, _, taps = _forward(m, data.clean, data.positions, fixed=(first, size, values))
                total += _scores(m, diff, taps, _logit_diff(logits, data))
                count += 1
    return total / count / len(data.clean)


@pytest.mark.parametrize("variant", ["eap-ig", "eap-ig-activations"])
def test_eap_ig_matches_the_library_definition(model64, tiny_task: Task, variant: str) -> None:  # noqa: ANN001
    data = scoring_data(tiny_task, "train", 12)
    ours = eap_ig_scores(model64, tiny_task, EAPIGConfig(steps=3, n_examples=12, batch_size=5), variant=variant)
    ref = reference_eap_ig(model64, data, 3, variant)
    # the reference's own forward agrees with the engine's plain model (a sanity check of the reference)
    torch.testing.assert_close(_forward(model64, data.clean, data.positions)[0],
                               model64.reference_forward(data.clean, data.positions))
    real = model64.graph.real_edges
    assert float(ref[real].abs().max()) > 1e-3
    torch.testing.assert_close(ours.double()[real], ref[real].float().double(), rtol=1e-4, atol=1e-6)


def test_planted_alpha_and_average_bugs_are_detected(model64, tiny_task: Task) -> None:  # noqa: ANN001
    """The reference distinguishes the definition from its near misses: alpha = k/(m-1), the k = 1..m grid,
    and a sum instead of the average. (The engine matched the definition above.)"""
    data = scoring_data(tiny_task, "train", 12)
    right = reference_eap_ig(model64, data, 3, "eap-ig")
    shifted = reference_eap_ig(model64, data, 3, "eap-ig", k_first=1)
    real = model64.graph.real_edges
    assert not torch.allclose(right[real], shifted[real], rtol=1e-3)
    assert not torch.allclose(right[real], 3 * right[real], rtol=1e-3)


def test_standard_eap_ig_is_not_complete_but_gates_variant_is(model64, tiny_task: Task) -> None:  # noqa: ANN001
    data = scoring_data(tiny_task, "train", None)
    with torch.no_grad():
        full = float(_logit_diff(_forward(model64, data.clean, data.positions)[0], data)) / len(data.clean)
        empty = float(_logit_diff(_forward(model64, data.corrupt, data.positions)[0], data)) / len(data.clean)
    cfg = EAPIGConfig(steps=8, n_examples=None, batch_size=24)
    gates = eap_ig_gates_scores(model64, tiny_task, cfg)
    assert float(gates.sum()) == pytest.approx(full - empty, rel=1e-2)
    standard = eap_ig_scores(model64, tiny_task, cfg)
    assert abs(float(standard.sum()) - (full - empty)) > 1e-2 * abs(full - empty)


def test_methods_name_their_definition(tiny_model, tiny_task: Task) -> None:  # noqa: ANN001
    for name in ("eap-ig", "eap-ig-activations", "eap-ig-gates"):
        c = get_method(name)(tiny_model, tiny_task, make_config(name, steps=2, n_examples=8, sparsity=0.5))
        assert c.meta["method"] == name and name in c.meta["definition"]
    assert "Hanna" in get_method("eap-ig").description and "not the field" in get_method("eap-ig-gates").description
    with pytest.raises(ValueError, match="interchange"):
        eap_ig_scores(tiny_model, tiny_task, EAPIGConfig(ablation="zero"))
