"""Load checkpoints: embedded models, local folders, hub ids -> MaskedTransformer (transformers imported lazily)."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor

from .assets import embedded_models
from .config import ModelConfig
from .graph import EdgeGraph
from .llama import convert_llama
from .model import MaskedTransformer
from .runtime import resolve_device

log = logging.getLogger(__name__)

Converter = Callable[[dict, dict[str, Tensor]], tuple[ModelConfig, dict[str, Tensor]]]
"""(HF config dict, HF state dict) -> (our ModelConfig, our state dict)."""


def _expect(t: Tensor, shape: tuple[int, ...], name: str) -> Tensor:
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"checkpoint tensor {name} has shape {tuple(t.shape)}, expected {tuple(shape)}")
    return t


def _strip(sd: dict[str, Tensor], prefixes: tuple[str, ...]) -> dict[str, Tensor]:
    out = {}
    for k, v in sd.items():
        for p in prefixes:
            if k.startswith(p):
                k = k[len(p):]
                break
        out[k] = v
    return out


def convert_gpt2(hf: dict, sd: dict[str, Tensor]) -> tuple[ModelConfig, dict[str, Tensor]]:
    """GPT-2 family (gpt2, gpt2-medium, distilgpt2, fine-tunes): Conv1D weights are [in, out]."""
    if hf.get("scale_attn_by_inverse_layer_idx") or hf.get("reorder_and_upcast_attn"):
        raise ValueError("GPT-2 checkpoints with scale_attn_by_inverse_layer_idx/reorder_and_upcast_attn are not supported")
    act = hf.get("activation_function", "gelu_new")
    acts = {"gelu_new": "gelu", "gelu_pytorch_tanh": "gelu", "gelu": "gelu_exact", "relu": "relu"}
    if act not in acts:
        raise ValueError(f"unsupported GPT-2 activation {act!r}; supported: {sorted(acts)}")
    d, h = hf["n_embd"], hf["n_head"]
    cfg = ModelConfig(n_layers=hf["n_layer"], n_heads=h, d_model=d, d_head=d // h, d_mlp=hf.get("n_inner") or 4 * d,
                      d_vocab=hf["vocab_size"], n_ctx=hf["n_positions"], norm_eps=hf.get("layer_norm_epsilon", 1e-5),
                      mlp=acts[act], architecture="gpt2",
                      attn_scale=None if hf.get("scale_attn_weights", True) else 1.0)
    sd = _strip(sd, ("transformer.",))
    out = {"W_E": _expect(sd["wte.weight"], (cfg.d_vocab, d), "wte"),
           "W_pos": _expect(sd["wpe.weight"], (cfg.n_ctx, d), "wpe"),
           "lnf_w": sd["ln_f.weight"], "lnf_b": sd["ln_f.bias"],
           "W_U": sd.get("lm_head.weight", sd["wte.weight"]).T, "b_U": torch.zeros(cfg.d_vocab)}
    for i in range(cfg.n_layers):
        s, o = f"h.{i}.", f"blocks.{i}."
        qkv = _expect(sd[s + "attn.c_attn.weight"], (d, 3 * d), s + "attn.c_attn.weight")
        q, k, v = qkv.split(d, dim=1)
        bq, bk, bv = sd[s + "attn.c_attn.bias"].split(d)
        heads = lambda w: w.reshape(d, h, d // h).permute(1, 0, 2)  # noqa: E731 — [d, h*dh] -> [h, d, dh]
        out.update({o + "W_Q": heads(q), o + "W_K": heads(k), o + "W_V": heads(v),
                    o + "b_Q": bq.reshape(h, -1), o + "b_K": bk.reshape(h, -1), o + "b_V": bv.reshape(h, -1),
                    o + "W_O": _expect(sd[s + "attn.c_proj.weight"], (d, d), s + "c_proj").reshape(h, d // h, d),
                    o + "b_O": sd[s + "attn.c_proj.bias"],
                    o + "ln1_w": sd[s + "ln_1.weight"], o + "ln1_b": sd[s + "ln_1.bias"],
                    o + "ln2_w": sd[s + "ln_2.weight"], o + "ln2_b": sd[s + "ln_2.bias"],
                    o + "W_in": _expect(sd[s + "mlp.c_fc.weight"], (d, cfg.d_mlp), s + "c_fc"),
                    o + "b_in": sd[s + "mlp.c_fc.bias"],
                    o + "W_out": _expect(sd[s + "mlp.c_proj.weight"], (cfg.d_mlp, d), s + "mlp.c_proj"),
                    o + "b_out": sd[s + "mlp.c_proj.bias"]})
    return cfg, out


CONVERTERS: dict[str, Converter] = {"gpt2": convert_gpt2, "llama": convert_llama, "mistral": convert_llama,
                                    "qwen2": convert_llama}
"""model_type of the Hugging Face config -> converter. Llama-family converters register here too."""


def _resolve(name: str) -> Path:
    """A local folder for `name`: an embedded model, a local path, or a hub snapshot (cached or downloaded)."""
    if name in embedded_models():
        return embedded_models()[name]
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(f"{path}: not a model folder (no config.json)")
        return path
    if path.suffix or name.startswith((".", "/", "~")):
        raise ValueError(f"{name}: no such model folder")
    try:
        from huggingface_hub import snapshot_download
        return Path(snapshot_download(name, allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt"]))
    except Exception as e:  # offline, unknown repo, gated repo: all mean "cannot load"
        raise ValueError(f"cannot load model {name!r}: not an embedded model ({', '.join(embedded_models()) or 'none'}),"
                         f" not a local folder, and the hub did not provide it ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''})") from None


def _read_state(folder: Path) -> dict[str, Tensor]:
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ValueError(f"{folder}: no .safetensors weights (pickled .bin checkpoints are never loaded; "
                         "convert them with save_pretrained(safe_serialization=True))")
    sd: dict[str, Tensor] = {}
    for f in files:
        sd.update(load_file(str(f)))
    return sd


def _tokenizer(folder: Path):  # noqa: ANN202
    try:
        from transformers import AutoTokenizer
        return AutoTokenizer.from_pretrained(str(folder))
    except Exception as e:  # a checkpoint without tokenizer files is still a usable model
        log.info("no tokenizer in %s (%s)", folder, e)
        return None


def load_model(name: str, device: str | torch.device | None = None, dtype: torch.dtype | None = None,
               split_embeddings: bool = False, checkpoint_layers: bool = False) -> MaskedTransformer:
    """Build a frozen MaskedTransformer from a checkpoint.

    Args:
        name: embedded model name (see `embedded_models()`), local `save_pretrained` folder, or hub id.
        device: "cuda", "mps", "cpu" or None for the best available.
        dtype: None = fp32 on CPU, bf16 on CUDA/MPS.
        split_embeddings: separate `tok` and `pos` writers (the paper's Tracr graph).
        checkpoint_layers: recompute each layer in backward instead of keeping its activations
            (engine/checkpoint.py; the memory estimate is `engine.memory.estimate(..., checkpoint=True)`).
    Raises:
        ValueError: the model cannot be found, loaded offline, or converted.
    """
    folder = _resolve(name)
    hf = json.loads((folder / "config.json").read_text())
    kind = hf.get("model_type", "")
    if kind not in CONVERTERS:
        raise ValueError(f"unsupported model type {kind!r} in {folder}; supported: {sorted(CONVERTERS)}")
    cfg, state = CONVERTERS[kind](hf, _read_state(folder))
    if split_embeddings:
        cfg = ModelConfig(**{**cfg.to_dict(), "split_embeddings": True})
    dev = resolve_device(device)
    if dtype is None:
        dtype = torch.float32 if dev.type == "cpu" else torch.bfloat16
    fingerprint = weights_hash(state)
    model = build(cfg, state, dev, dtype)
    model.name = name
    model.weights_hash = fingerprint
    model.tokenizer = _tokenizer(folder)
    model.checkpoint_layers = checkpoint_layers
    return model


def weights_hash(state: dict[str, Tensor]) -> str:
    """Cheap fingerprint of a checkpoint: shapes plus a strided sample of every tensor's values.

    Two models with one architecture (same config hash) but different training get different hashes,
    so circuits of different models are never intersected by mistake.
    """
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().flatten()
        sample = t[:: max(1, t.numel() // 256)][:256].float().cpu().numpy().tobytes()
        h.update(f"{name}{tuple(state[name].shape)}".encode())
        h.update(sample)
    return h.hexdigest()[:16]


def build(cfg: ModelConfig, state: dict[str, Tensor], device: torch.device | str = "cpu",
          dtype: torch.dtype = torch.float32) -> MaskedTransformer:
    """A frozen MaskedTransformer with `state` loaded (shapes checked, nothing missing or extra).

    Parameters are created on the meta device and each checkpoint tensor is moved to `device` in
    `dtype` once: a 13B model never exists in fp32 on the host (peak host memory ~ the checkpoint).
    """
    graph = EdgeGraph(cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, cfg.split_embeddings)
    with torch.device("meta"):
        model = MaskedTransformer(cfg, graph)
    own = model.state_dict()
    missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or extra:
        raise ValueError(f"weights do not fit the architecture: missing {missing[:5]}, unexpected {extra[:5]}")
    for k, v in state.items():
        _expect(v, tuple(own[k].shape), k)
    # a copy per parameter (converters may reuse one tensor, e.g. zero biases; FSDP needs them distinct);
    # the float32 hop makes the values bit-identical to loading in fp32 and then casting
    tensors = {k: v.to(device, torch.float32, copy=True).to(dtype).contiguous() for k, v in state.items()}
    model.load_state_dict(tensors, assign=True)
    return model.eval().requires_grad_(False)
