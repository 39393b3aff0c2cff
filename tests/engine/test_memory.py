"""Memory estimator: parameter and graph sizes match the real model; the estimate responds to its switches; CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from engine.__main__ import main
from engine.config import ModelConfig
from engine.memory import block_params, config_for, estimate, graph_size, outer_params
from engine.model import MaskedTransformer

LLAMA = ModelConfig(n_layers=3, n_heads=4, n_kv_heads=2, d_model=16, d_head=4, d_mlp=24, d_vocab=50, n_ctx=32,
                    norm="rmsnorm", positions="rotary", mlp="swiglu", architecture="llama")
GPT2 = ModelConfig(n_layers=2, n_heads=2, d_model=8, d_head=4, d_mlp=32, d_vocab=32, n_ctx=16)


@pytest.mark.parametrize("cfg", [LLAMA, GPT2], ids=["llama", "gpt2"])
def test_sizes_match_the_model(cfg: ModelConfig) -> None:
    model = MaskedTransformer(cfg)
    assert outer_params(cfg) + cfg.n_layers * block_params(cfg) == sum(p.numel() for p in model.parameters())
    assert graph_size(cfg) == (model.graph.n_src, model.graph.n_dst)


def test_estimate_responds_to_its_switches() -> None:
    base = estimate(LLAMA, 8, 32, "fp32")
    assert base.total == base.weights + base.buffers + base.activations + base.gates + base.logits
    assert estimate(LLAMA, 8, 32, "fp32", checkpoint=True).activations < base.activations
    assert estimate(LLAMA, 8, 32, "bf16").weights * 2 == base.weights
    two = estimate(LLAMA, 8, 32, torch.float32, n_gpus=2)
    assert two.checkpoint and two.batch_per_device == 4 and two.weights < base.weights
    assert two.gates == base.gates  # gates are replicated
    assert estimate(LLAMA, 16, 32, "fp32").buffers == 2 * base.buffers
    with pytest.raises(ValueError, match="split evenly"):
        estimate(LLAMA, 9, 32, "fp32", n_gpus=2)
    with pytest.raises(ValueError, match="unknown dtype"):
        estimate(LLAMA, 8, 32, "fp8")


def test_info_cli_reads_llama_config_only(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    transformers = pytest.importorskip("transformers")
    hf = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    hf.save_pretrained(tmp_path)  # config.json only: info must not need the weights
    cfg = config_for(str(tmp_path))
    assert cfg is not None and cfg.kv_heads == 2 and cfg.norm == "rmsnorm"
    assert main(["info", "--model", str(tmp_path), "--batch", "8", "--seq-len", "32", "--gpus", "2"]) == 0
    out = capsys.readouterr().out
    assert "total per device" in out and "2 devices, batch 4 per device, checkpointing on" in out
    assert main(["info", "--model", str(tmp_path), "--batch", "3", "--gpus", "2"]) == 2


def test_estimate_counts_the_kept_reader_inputs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reader inputs kept for backward (top layers first, within the device's budget) are in the estimate."""
    import dataclasses

    import engine.residual as residual
    cfg = dataclasses.replace(GPT2, n_layers=3)
    layer = (cfg.n_heads * 3 + 1) * 8 * 20 * cfg.d_model * 4      # layer 1: every reader, plus the MLP row
    last = (2 * cfg.kv_heads + 1) * 8 * 20 * cfg.d_model * 4      # layer 2, the last: k and v only
    activations = {}
    for budget in (0, last, last + layer - 1, last + layer, 10**9):
        monkeypatch.setitem(residual.KEEP_INPUT_BYTES, "cpu", budget)
        activations[budget] = estimate(cfg, 8, 20, "fp32", device="cpu").activations - activations.get(0, 0)
    assert list(activations.values())[1:] == [last, last, last + layer, last + layer]   # never layer 0
    assert estimate(cfg, 8, 20, "fp32", device="cpu", checkpoint=True).activations < activations[0]
