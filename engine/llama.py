"""Weight converters for Llama-family checkpoints: Llama, CodeLlama, Mistral, Qwen2 (RMSNorm, rotary, SwiGLU, GQA)."""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from .config import ModelConfig

ROPE_TYPES = ("default",)
"""Rotary variants the masked forward implements (plain theta-based frequencies)."""


def _rope_theta(hf: dict) -> float:
    """Rotary base: transformers >= 5 keeps it in `rope_parameters`, older configs in `rope_theta`."""
    params = hf.get("rope_parameters") or {}
    scaling = hf.get("rope_scaling") or {}
    kind = params.get("rope_type") or scaling.get("rope_type") or scaling.get("type") or "default"
    if kind not in ROPE_TYPES:
        raise ValueError(f"unsupported rotary scaling {kind!r}; supported: {list(ROPE_TYPES)}")
    return float(params.get("rope_theta", hf.get("rope_theta", 10000.0)))


def _n_ctx(hf: dict) -> int:
    """Longest sequence where the plain causal forward equals the checkpoint's (sliding windows cap it)."""
    n_ctx = int(hf.get("max_position_embeddings", 2048))
    window = hf.get("sliding_window")
    uses_window = hf.get("use_sliding_window", hf.get("model_type") == "mistral")
    return min(n_ctx, int(window)) if window and uses_window else n_ctx


def llama_config(hf: dict) -> ModelConfig:
    """Our ModelConfig for a Hugging Face Llama / Mistral / Qwen2 config dict."""
    if hf.get("hidden_act", "silu") != "silu":
        raise ValueError(f"unsupported Llama-family activation {hf['hidden_act']!r}; supported: ['silu']")
    d, h = hf["hidden_size"], hf["num_attention_heads"]
    kv = hf.get("num_key_value_heads") or h
    return ModelConfig(
        n_layers=hf["num_hidden_layers"], n_heads=h, d_model=d, d_head=hf.get("head_dim") or d // h,
        d_mlp=hf["intermediate_size"], d_vocab=hf["vocab_size"], n_ctx=_n_ctx(hf),
        n_kv_heads=kv if kv != h else None, norm="rmsnorm", positions="rotary", mlp="swiglu",
        norm_eps=float(hf.get("rms_norm_eps", 1e-6)), rotary_base=_rope_theta(hf),
        use_attn_bias=bool(hf.get("attention_bias", False)) or hf.get("model_type") == "qwen2",
        use_mlp_bias=bool(hf.get("mlp_bias", False)), architecture=hf.get("model_type", "llama"))


def _linear(sd: dict[str, Tensor], name: str, shape: tuple[int, int]) -> Tensor:
    """An nn.Linear weight [out, in] as our [in, out]."""
    w = sd[name + ".weight"]
    if tuple(w.shape) != shape:
        raise ValueError(f"checkpoint tensor {name}.weight has shape {tuple(w.shape)}, expected {shape}")
    return w.T


def _bias(sd: dict[str, Tensor], name: str, size: int) -> Tensor:
    """The bias of `name`, or zeros where the architecture has none (Llama; Qwen2's o_proj)."""
    return sd.get(name + ".bias", torch.zeros(size))


def _attention(sd: dict[str, Tensor], s: str, cfg: ModelConfig) -> dict[str, Tensor]:
    """q/k/v/o projections of one layer, heads stacked: W_Q [h, d, dh], W_K/W_V [kv, d, dh], W_O [h, dh, d]."""
    d, h, kv, dh = cfg.d_model, cfg.n_heads, cfg.kv_heads, cfg.d_head
    heads = lambda w, n: w.reshape(d, n, dh).permute(1, 0, 2)  # noqa: E731 — [d, n*dh] -> [n, d, dh]
    a = s + "self_attn."
    return {"W_Q": heads(_linear(sd, a + "q_proj", (h * dh, d)), h),
            "W_K": heads(_linear(sd, a + "k_proj", (kv * dh, d)), kv),
            "W_V": heads(_linear(sd, a + "v_proj", (kv * dh, d)), kv),
            "b_Q": _bias(sd, a + "q_proj", h * dh).reshape(h, dh),
            "b_K": _bias(sd, a + "k_proj", kv * dh).reshape(kv, dh),
            "b_V": _bias(sd, a + "v_proj", kv * dh).reshape(kv, dh),
            "W_O": _linear(sd, a + "o_proj", (d, h * dh)).reshape(h, dh, d),
            "b_O": _bias(sd, a + "o_proj", d)}


def _mlp(sd: dict[str, Tensor], s: str, cfg: ModelConfig) -> dict[str, Tensor]:
    """SwiGLU: down(silu(gate(x)) * up(x)); up_proj is our W_in, gate_proj our W_gate."""
    d, dm, m = cfg.d_model, cfg.d_mlp, s + "mlp."
    return {"W_in": _linear(sd, m + "up_proj", (dm, d)), "b_in": _bias(sd, m + "up_proj", dm),
            "W_gate": _linear(sd, m + "gate_proj", (dm, d)),
            "W_out": _linear(sd, m + "down_proj", (d, dm)), "b_out": _bias(sd, m + "down_proj", d)}


def convert_llama(hf: dict, sd: dict[str, Tensor]) -> tuple[ModelConfig, dict[str, Tensor]]:
    """Llama / CodeLlama / Mistral / Qwen2 `*ForCausalLM` checkpoints -> (ModelConfig, our state dict).

    Tied embeddings (no `lm_head.weight` in the checkpoint) reuse `embed_tokens` as the unembedding.
    """
    cfg = llama_config(hf)
    d = cfg.d_model
    sd = {k.removeprefix("model."): v for k, v in sd.items()}
    emb = sd["embed_tokens.weight"]
    if tuple(emb.shape) != (cfg.d_vocab, d):
        raise ValueError(f"checkpoint tensor embed_tokens has shape {tuple(emb.shape)}, expected {(cfg.d_vocab, d)}")
    head = sd.get("lm_head.weight", emb)
    if head.shape[0] != cfg.d_vocab:
        cfg = replace(cfg, d_vocab_out=head.shape[0])
    zeros = torch.zeros(d)
    out = {"W_E": emb, "lnf_w": sd["norm.weight"], "lnf_b": zeros,
           "W_U": head.T, "b_U": torch.zeros(head.shape[0])}
    for i in range(cfg.n_layers):
        s, o = f"layers.{i}.", f"blocks.{i}."
        block = {**_attention(sd, s, cfg), **_mlp(sd, s, cfg),
                 "ln1_w": sd[s + "input_layernorm.weight"], "ln1_b": zeros,
                 "ln2_w": sd[s + "post_attention_layernorm.weight"], "ln2_b": zeros}
        out.update({o + k: v for k, v in block.items()})
    return cfg, out
