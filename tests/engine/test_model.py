"""Invariants of the edge-masked forward against transformers' own GPT-2."""

from pathlib import Path

import pytest
import torch

import engine.residual as residual
from engine.weights import load_model
from tests.conftest import save_gpt2


@pytest.fixture(autouse=True, params=["one chunk, inputs kept", "small chunks, inputs mixed again"])
def chunking(request, monkeypatch):
    """Every test runs with the whole batch as one chunk and every reader input kept for backward, and
    with many small chunks (last one partial) whose inputs backward mixes again."""
    if request.param.startswith("small chunks"):
        monkeypatch.setitem(residual.CHUNK_BYTES, "cpu", 900)  # 4 tokens at d8 (2 heads), 1 at d40
        monkeypatch.setitem(residual.KEEP_INPUT_BYTES, "cpu", 0)
    else:
        monkeypatch.setitem(residual.KEEP_INPUT_BYTES, "cpu", 10**9)
    return request.param


def _hf(path: Path):
    from transformers import GPT2LMHeadModel
    return GPT2LMHeadModel.from_pretrained(path).eval()


@pytest.fixture(scope="module", params=[(2, 2, 8), (3, 5, 40)], ids=["2x2d8", "3x5d40"])
def pair(request, tmp_path_factory):
    n_layer, n_head, n_embd = request.param
    path = save_gpt2(tmp_path_factory.mktemp("gpt2"), n_layer, n_head, n_embd, vocab=50, n_positions=16, seed=1,
                     random_biases=True)
    return load_model(str(path), device="cpu"), _hf(path)


def _tokens(seed: int, shape=(3, 11)):
    return torch.randint(0, 50, shape, generator=torch.Generator().manual_seed(seed))


def test_reference_forward_matches_transformers(pair):
    model, hf = pair
    x = _tokens(0)
    with torch.no_grad():
        torch.testing.assert_close(model.reference_forward(x), hf(x).logits, atol=1e-4, rtol=0)


def test_all_kept_equals_clean_and_all_ablated_equals_corrupt(pair):
    model, hf = pair
    x, xc = _tokens(0), _tokens(1)
    cache = model.corrupt_cache(xc)
    keep = model.graph.real_edges.float()
    with torch.no_grad():
        torch.testing.assert_close(model(x, keep, cache), hf(x).logits, atol=1e-4, rtol=0)
        torch.testing.assert_close(model(x, keep * 0, cache), hf(xc).logits, atol=1e-4, rtol=0)


def test_non_real_edges_have_no_effect(pair):
    model, _ = pair
    x, xc = _tokens(2), _tokens(3)
    cache = model.corrupt_cache(xc)
    keep = torch.rand(model.graph.n_src, model.graph.n_dst, generator=torch.Generator().manual_seed(0))
    noise = torch.rand_like(keep) * ~model.graph.real_edges
    with torch.no_grad():
        torch.testing.assert_close(model(x, keep * model.graph.real_edges, cache), model(x, keep * model.graph.real_edges + noise, cache))


def _hf_with_head_patched(hf, x: torch.Tensor, xc: torch.Tensor, layer: int, head: int) -> torch.Tensor:
    """transformers' logits on x with one head's output (its slice of c_proj's input) taken from the run on xc."""
    proj, dh = hf.transformer.h[layer].attn.c_proj, hf.config.n_embd // hf.config.n_head
    cols, saved = slice(head * dh, (head + 1) * dh), {}

    def grab(_mod, args):  # noqa: ANN001, ANN202
        saved["z"] = args[0].detach().clone()

    def patch(_mod, args):  # noqa: ANN001, ANN202
        z = args[0].clone()
        z[..., cols] = saved["z"][..., cols]
        return (z,)

    with torch.no_grad():
        handle = proj.register_forward_pre_hook(grab)
        hf(xc)
        handle.remove()
        handle = proj.register_forward_pre_hook(patch)
        out = hf(x).logits
        handle.remove()
    return out


def test_node_gate_zero_removes_node(pair):
    """A shut node gate on a1.h1 (or a0.h1) = transformers with that head's output taken from the corrupted run
    (float64: the head's effect on these small random weights is ~1e-5 of the logits)."""
    import copy
    model, hf = (copy.deepcopy(m).double() for m in pair)
    g = model.graph
    x, xc = _tokens(4), _tokens(5)
    cache = model.corrupt_cache(xc)
    with torch.no_grad():
        clean = hf(x).logits
    for layer in range(2):
        nodes = torch.ones(g.n_src, dtype=torch.float64)
        nodes[g.src_index(f"a{layer}.h1")] = 0
        with torch.no_grad():
            got = model(x, g.real_edges.double() * nodes[:, None], cache)
        want = _hf_with_head_patched(hf, x, xc, layer, 1)
        assert (want - clean).abs().max() > 1e-7   # the head matters, so the check below can fail
        torch.testing.assert_close(got - clean, want - clean, atol=1e-10, rtol=1e-6)


def test_answer_positions_only(pair):
    model, _ = pair
    x, xc = _tokens(6), _tokens(7)
    cache = model.corrupt_cache(xc)
    keep = torch.rand(model.graph.n_src, model.graph.n_dst, generator=torch.Generator().manual_seed(1))
    pos = torch.tensor([[10, 2], [4, -1], [0, 10]])
    with torch.no_grad():
        full = model(x, keep, cache)
        some = model(x, keep, cache, positions=pos)
    for b in range(3):
        for k in range(2):
            if pos[b, k] >= 0:
                torch.testing.assert_close(some[b, k], full[b, pos[b, k]])


# Gate gradients vs finite differences on every edge: tests/engine/test_math.py (float64, relative tolerance).


def test_split_embeddings_invariant(tmp_path):
    path = save_gpt2(tmp_path, 2, 2, 8, vocab=50, seed=4)
    model = load_model(str(path), device="cpu", split_embeddings=True)
    assert model.graph.src_names[:2] == ("tok", "pos")
    x, xc = _tokens(10), _tokens(11)
    cache = model.corrupt_cache(xc)
    keep = model.graph.real_edges.float()
    with torch.no_grad():
        torch.testing.assert_close(model(x, keep, cache), model.reference_forward(x), atol=1e-5, rtol=0)
        torch.testing.assert_close(model(x, keep * 0, cache), model.reference_forward(xc), atol=1e-5, rtol=0)


def test_model_has_no_grad_and_no_run_state(tiny_model):
    assert not any(p.requires_grad for p in tiny_model.parameters())
    before = set(vars(tiny_model))
    x = _tokens(0, (2, 5)) % tiny_model.cfg.d_vocab
    tiny_model(x, tiny_model.graph.real_edges.float(), tiny_model.corrupt_cache(x))
    assert set(vars(tiny_model)) == before


def test_too_long_input_is_rejected(tiny_model):
    with pytest.raises(ValueError, match="at most"):
        tiny_model.reference_forward(torch.zeros(1, tiny_model.cfg.n_ctx + 1, dtype=torch.long))


def test_unloadable_models_give_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="no config.json"):
        load_model(str(tmp_path))
    with pytest.raises(ValueError, match="no such model folder"):
        load_model(str(tmp_path / "missing"))


def _layer_input_bytes(model, cache, layer, last_at=False):
    cfg = model.cfg
    rows = (2 * cfg.kv_heads if last_at and layer == cfg.n_layers - 1 else cfg.n_heads + 2 * cfg.kv_heads) + 1
    return cache.outputs.shape[0] * rows * cache.outputs.shape[2] * model.dtype.itemsize


@pytest.mark.parametrize("checkpoint", [False, True], ids=["plain", "checkpointed"])
def test_chunking_and_kept_inputs_change_nothing(tmp_path, monkeypatch, checkpoint):
    """Outputs and gate gradients are the same whatever the chunk size (the last chunk partly used) and
    whichever layers keep their readers' inputs for backward (none, the top one, all but layer 0)."""
    path = save_gpt2(tmp_path, 3, 2, 8, vocab=50, seed=5)
    model = load_model(str(path), device="cpu").double()
    x, xc = _tokens(12, (3, 7)), _tokens(13, (3, 7))
    pos = torch.tensor([[6, 2], [5, -1], [0, 6]])
    results = []
    for budget, kept in [(10**9, "none"), (900, "top"), (1, "all"), (10**9, "all"), (900, "none")]:
        # chunks: one; 2 tokens each (11 chunks); 1 token each
        monkeypatch.setitem(residual.CHUNK_BYTES, "cpu", budget)
        cache = model.corrupt_cache(xc)
        top = _layer_input_bytes(model, cache, 2)
        keep_bytes = {"none": 0, "top": top + 1, "all": 10**9}[kept]
        monkeypatch.setitem(residual.KEEP_INPUT_BYTES, "cpu", keep_bytes)
        assert sorted(model._kept_inputs(cache, False, None)) == {"none": [], "top": [2], "all": [1, 2]}[kept]
        keep = (torch.rand(model.graph.n_src, model.graph.n_dst, dtype=torch.float64,
                           generator=torch.Generator().manual_seed(3)) * model.graph.real_edges).requires_grad_(True)
        full = model(x, keep, cache, checkpoint=checkpoint)
        out = model(x, keep, cache, pos, checkpoint=checkpoint)
        (out.pow(2).sum() + full.sin().sum()).backward()
        results.append((cache.chunk, full.detach(), out.detach(), keep.grad))
    assert [r[0] for r in results] == [21, 2, 1, 21, 2]
    for _, full, out, grad in results[1:]:
        torch.testing.assert_close(full, results[0][1])
        torch.testing.assert_close(out, results[0][2])
        torch.testing.assert_close(grad, results[0][3])


def test_overwrite_corrupt_gives_the_same_result(pair):
    model, _ = pair
    x, xc = _tokens(14), _tokens(15)
    keep = torch.rand(model.graph.n_src, model.graph.n_dst, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        want = model(x, keep, model.corrupt_cache(xc))
        got = model(x, keep, model.corrupt_cache(xc), overwrite_corrupt=True)
    torch.testing.assert_close(got, want)


def _hf_final_residual(hf, x: torch.Tensor) -> torch.Tensor:
    """transformers' residual stream where the final LayerNorm reads it."""
    saved = {}
    handle = hf.transformer.ln_f.register_forward_pre_hook(lambda _m, args: saved.setdefault("r", args[0].clone()))
    with torch.no_grad():
        hf(x)
    handle.remove()
    return saved["r"]


@pytest.mark.parametrize("ablation", ["zero", "mean"])
def test_ablations_match_their_definition(pair, ablation):
    """All edges ablated, by transformers' own weights: zero ablation leaves only the attention output biases
    (c_proj.bias of each attention layer) in the residual; mean ablation the batch mean of the clean residual."""
    model, hf = pair
    x = _tokens(16)
    cache = model.corrupt_cache(x, ablation)
    flat = cache.flat_outputs()
    if ablation == "zero":
        assert float(flat.abs().max()) == 0.0
    else:
        clean = model.corrupt_cache(x).flat_outputs().view(flat.shape[0], x.shape[0], -1)
        torch.testing.assert_close(flat.view_as(clean), clean.mean(1, keepdim=True).expand_as(clean))
    keep = model.graph.real_edges.float() * 0
    with torch.no_grad():
        out = model(x, keep, cache)
        if ablation == "zero":
            resid = sum(blk.attn.c_proj.bias for blk in hf.transformer.h).expand(*x.shape, -1)
        else:
            resid = _hf_final_residual(hf, x).mean(0, keepdim=True).expand(x.shape[0], -1, -1)
        want = hf.lm_head(hf.transformer.ln_f(resid))
    torch.testing.assert_close(out, want, atol=1e-4, rtol=0)


def test_workspace_memory_is_reused_and_changes_nothing(pair):
    from engine.residual import Workspace
    model, _ = pair
    x, xc = _tokens(17), _tokens(18)
    keep = (torch.rand(model.graph.n_src, model.graph.n_dst, generator=torch.Generator().manual_seed(5))
            * model.graph.real_edges).requires_grad_(True)
    model(x, keep, model.corrupt_cache(xc)).sum().backward()
    want, want_grad = model(x, keep, model.corrupt_cache(xc)).detach(), keep.grad.clone()
    ws, ptrs = Workspace(), set()
    for _ in range(2):   # the second step reuses the first one's memory
        keep.grad = None
        cache = model.corrupt_cache(xc, workspace=ws)
        ptrs.add(cache.outputs.data_ptr())
        out = model(x, keep, cache, overwrite_corrupt=True, workspace=ws)
        out.sum().backward()
        torch.testing.assert_close(out.detach(), want)
        torch.testing.assert_close(keep.grad, want_grad)
    assert len(ptrs) == 1
    kept = {k for k in ws._tensors if k.startswith("kept")}
    assert kept == (set() if residual.KEEP_INPUT_BYTES["cpu"] == 0 else {f"kept{i}" for i in range(1, model.cfg.n_layers)})
    with torch.no_grad():   # nothing to keep for a backward that never comes
        model(x, keep, model.corrupt_cache(xc), workspace=(fresh := Workspace()))
    assert not any(k.startswith("kept") for k in fresh._tensors)
