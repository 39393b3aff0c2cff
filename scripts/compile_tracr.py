"""Compile the shipped Tracr programs and write assets/tracr/<name>/ (needs requirements-tracr.txt).

    pip install -r requirements-tracr.txt
    python scripts/compile_tracr.py            # all programs
    python scripts/compile_tracr.py reverse    # one
    python scripts/compile_tracr.py --ground-truth-only   # ground_truth.json again from the shipped models (no tracr)

Each folder gets model.safetensors (our MaskedTransformer weights), config.json (our ModelConfig,
vocabulary, output labels), reference.safetensors (every input up to max_seq_len and tracr's own
outputs on it) and ground_truth.json (derived and necessary edges in the default and split graphs).
The app and the tests read these with no jax installed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine import tracr as et  # noqa: E402
from engine.tasks import tracr as tt  # noqa: E402


@dataclass(frozen=True)
class Program:
    """One RASP program from tracr.compiler.lib and the vocabulary it is compiled for."""

    make: Callable[[], Any]
    vocab: tuple[str, ...]
    max_seq_len: int
    description: str


def _programs() -> dict[str, Program]:
    from tracr.compiler import lib
    from tracr.rasp import rasp
    return {
        "reverse": Program(lambda: lib.make_reverse(rasp.tokens), ("a", "b", "c", "d"), 5,
                           "reverse the input (lib.make_reverse); categorical output at every position"),
        "xproportion": Program(lambda: lib.make_frac_prevs(rasp.tokens == "x"), ("a", "b", "c", "x"), 5,
                               "fraction of tokens so far that are 'x' (lib.make_frac_prevs); numerical output"),
        "hist": Program(lib.make_hist, ("a", "b", "c", "d"), 5,
                        "how often each token occurs in the input (lib.make_hist); categorical output"),
    }


def compile_program(p: Program) -> Any:
    from tracr.compiler import compiling
    return compiling.compile_rasp_to_model(p.make(), vocab=set(p.vocab), max_seq_len=p.max_seq_len,
                                           compiler_bos="BOS", compiler_pad="compiler_pad")


def tracr_reference(assembled: Any, p: Program, w_u: torch.Tensor) -> tt.TracrReference:
    """Run tracr itself on every input of every length (one batch per length: no padding)."""
    import jax
    import jax.numpy as jnp
    forward = jax.jit(assembled.forward)
    enc = assembled.input_encoder.encoding_map
    n_ctx = p.max_seq_len + 1
    inputs, lengths, outputs = [], [], []
    for n in range(1, p.max_seq_len + 1):
        seqs = [["BOS", *s] for s in itertools.product(p.vocab, repeat=n)]
        ids = np.array([[enc[t] for t in s] for s in seqs])
        res = np.asarray(forward(assembled.params, jnp.array(ids)).transformer_output.output)
        out = torch.from_numpy(res.astype(np.float32)) @ w_u
        pad = np.full((len(seqs), n_ctx - n - 1), enc["compiler_pad"])
        inputs.append(torch.from_numpy(np.concatenate([ids, pad], 1)))
        lengths.append(torch.full((len(seqs),), n + 1))
        outputs.append(torch.cat([out, out.new_zeros(len(seqs), n_ctx - n - 1, out.shape[-1])], 1))
    return tt.TracrReference(torch.cat(inputs).long(), torch.cat(lengths).long(), torch.cat(outputs))


def check_decoded(assembled: Any, ref: tt.TracrReference, labels: tuple[str, ...], every: int = 97) -> None:
    """tracr's own `apply` (decoded labels) agrees with the stored outputs on every `every`-th input."""
    vocab = {v: k for k, v in assembled.input_encoder.encoding_map.items()}
    for i in range(0, len(ref.lengths), every):
        n = int(ref.lengths[i])
        got = assembled.apply([vocab[int(t)] for t in ref.inputs[i, :n]]).decoded[1:]
        want = ref.outputs[i, 1:n]
        if labels:
            assert [str(g) for g in got] == [labels[j] for j in want.argmax(-1)], (i, got)
        else:
            assert np.allclose(got, want[:, 0].numpy(), atol=1e-5), (i, got)


def ground_truth(name: str, convert: Callable[[bool], tuple], ref: tt.TracrReference, categorical: bool) -> dict:
    """Derived and necessary edges per graph; convert(split_embeddings) -> (model, derived circuit).

    Necessary edges are found on every input padded into one batch (as training sees them; the model
    masks its pad keys) and must equal those found one length at a time (no padding at all)."""
    out: dict = {}
    for key, split in (("default", False), ("split", True)):
        model, derived = convert(split)
        for padded in (False, True):
            assert tt.mismatches(model, None, ref, categorical, padded=padded) == 0, f"{name}: model differs from tracr"
            assert tt.mismatches(model, derived, ref, categorical, padded=padded) == 0, f"{name}: derived circuit differs"
        nec = {abl: tt.necessary_edges(model, derived, ref, categorical, abl, padded=True)
               for abl in ("zero", "interchange")}
        for abl, edges in nec.items():
            assert edges == tt.necessary_edges(model, derived, ref, categorical, abl), f"{name}: padding changes {abl}"
        pairs = lambda edges: [e.split("->", 1) for e in edges]  # noqa: E731
        out[key] = {"graph": model.graph.to_dict(), "derived": pairs(derived.edges()),
                    "necessary": {abl: pairs(e) for abl, e in nec.items()}}
        print(f"{name} [{key}] derived {derived.n_edges}, necessary zero {len(nec['zero'])}, "
              f"interchange {len(nec['interchange'])} of {model.graph.n_edges} edges")
    return out


def write(name: str, p: Program, root: Path) -> None:
    assembled = compile_program(p)
    cfg, state = et.convert_tracr_params(assembled)
    vocab = et.tracr_vocab(assembled)
    ref = tracr_reference(assembled, p, state["W_U"])
    check_decoded(assembled, ref, vocab.labels)
    categorical = bool(vocab.labels)
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"))
    save_file({"inputs": ref.inputs, "lengths": ref.lengths, "outputs": ref.outputs},
              str(folder / "reference.safetensors"))
    info = {"program": name, "description": p.description, "model_config": cfg.to_dict(),
            "vocab": list(vocab.tokens), "labels": list(vocab.labels), "bos": vocab.bos, "pad": vocab.pad,
            "output": "categorical" if categorical else "numerical", "max_seq_len": p.max_seq_len,
            "compiled_with": {k: version(k) for k in ("tracr-pypi", "jax", "dm-haiku")},
            "command": f"python scripts/compile_tracr.py {name}"}
    (folder / "config.json").write_text(json.dumps(info, indent=1) + "\n")
    truth = ground_truth(name, lambda split: et.from_tracr(assembled, split_embeddings=split), ref, categorical)
    (folder / "ground_truth.json").write_text(json.dumps(truth, indent=1) + "\n")


def rewrite_ground_truth(name: str, root: Path) -> None:
    """ground_truth.json from the shipped model and reference (after a change to the model, e.g. its pad mask)."""
    info = json.loads((root / name / "config.json").read_text())

    def convert(split: bool) -> tuple:
        model = et.load_tracr_model(name, split)[0]
        return model, et.derived_circuit(model)

    truth = ground_truth(name, convert, et.load_reference(name), info["output"] == "categorical")
    (root / name / "ground_truth.json").write_text(json.dumps(truth, indent=1) + "\n")


def main() -> None:
    names = ("reverse", "xproportion", "hist")   # the keys of _programs(), which needs tracr
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", choices=[*names, []], help="programs to compile (default: all)")
    ap.add_argument("--out", type=Path, default=et.TRACR_ASSETS)
    ap.add_argument("--ground-truth-only", action="store_true",
                    help="rewrite ground_truth.json from the shipped models (no tracr needed)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    for name in args.names or names:
        if args.ground_truth_only:
            rewrite_ground_truth(name, args.out)
        else:
            write(name, _programs()[name], args.out)


if __name__ == "__main__":
    main()
