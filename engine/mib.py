"""The MIB benchmark's circuit-localisation track: its submission files, and CPR / CMD computed as its evaluator does.

MIB (Mueller et al. 2025, https://arxiv.org/abs/2504.13151; code: the MIB circuit-track repository and the
leaderboard's auto-evaluator, `MIB_circuit_track/evaluation.py` and `circuit_loading.py`) takes, per task and
model, a folder named `{task}_{model}` (the task's underscores written as hyphens: `ioi_gpt2`,
`arc-easy_llama3`) holding one file of importance scores for every edge (or 9 binary circuits). A file is JSON
or a torch `.pt`; `.pt` is a pickle, which this project never writes or reads, so we use the JSON form:

    {"cfg": {"n_layers": L, "n_heads": H, "parallel_attn_mlp": false, "d_model": D},
     "nodes": {"input": {"in_graph": true}, "a0.h0": {...}, "m0": {...}, ..., "logits": {...}},
     "edges": {"input->a0.h0<q>": {"score": 0.12, "in_graph": true}, ..., "m11->logits": {...}}}

Node and edge names are EAP-IG's, which ours are (`input`, `a{L}.h{H}`, `m{L}`, `logits`, `src->dst<q|k|v>`),
and the graph is the same (GPT-2 small: 32,491 edges). Our split-embedding graph (`tok`/`pos`) and the
grouped-query readers (`a{L}.kv{G}`) have no MIB counterpart and are refused.

Scores (the evaluator's `evaluate_area_under_curve`, linear size axis): for each share p of MIB_SIZES the circuit
keeps the int(p * n_edges) edges of largest |score|, then drops dangling edges; its faithfulness is
f = (m(C) - m(empty)) / (m(full) - m(empty)) with m the logit difference averaged over examples; CPR is the
trapezoid area of f over the shares, CMD that of |1 - f|.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from .circuit import Circuit, _atomic
from .graph import EdgeGraph
from .methods.batched import evaluate_keeps
from .methods.common import batches, corrupted, scoring_data
from .metrics import logit_diff
from .model import MaskedTransformer
from .tasks.base import Task

MIB_SIZES: tuple[float, ...] = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
"""The evaluator's `percentages`: shares of all edges at which a circuit is scored."""
FILE_NAME = "importances.json"   # the name MIB's own attribution script gives the file (`importances.pt`), as JSON


def folder_name(task: str, model: str) -> str:
    """`{task}_{model}` with the task's underscores as hyphens, as MIB names submission folders."""
    if not task or not model or "/" in task + model:
        raise ValueError(f"task and model names must be non-empty and contain no '/', got {task!r}, {model!r}")
    return f"{task.replace('_', '-')}_{model}"


def _check_graph(graph: EdgeGraph) -> None:
    if graph.split_embeddings:
        raise ValueError("MIB's graph has one `input` node; this circuit's graph splits it into `tok` and `pos`")
    if graph.kv_heads != graph.n_heads:
        raise ValueError("MIB's graph has per-head k/v readers; this circuit's grouped-query readers (a{L}.kv{G}) "
                         "have no MIB counterpart")


def to_mib(circuit: Circuit, d_model: int) -> dict:
    """The circuit as MIB's JSON: every edge with its score and membership; a node is in the graph when a kept
    edge touches it."""
    g = circuit.graph
    _check_graph(g)
    keep = circuit.keep & g.real_edges
    edges = {}
    for i, j in g.real_edges.nonzero().tolist():
        score = float(circuit.scores[i, j])
        if not math.isfinite(score):
            raise ValueError(f"edge {g.edge_id(i, j)} has a non-finite score ({score}); MIB needs finite scores")
        edges[g.edge_id(i, j)] = {"score": score, "in_graph": bool(keep[i, j])}
    used = {n for e, v in edges.items() if v["in_graph"] for n in _ends(e)}
    nodes = {n: {"in_graph": n in used} for n in g.nodes}
    cfg = {"n_layers": g.n_layers, "n_heads": g.n_heads, "parallel_attn_mlp": False, "d_model": int(d_model)}
    return {"cfg": cfg, "nodes": nodes, "edges": edges}


def _ends(edge: str) -> tuple[str, str]:
    src, dst = edge.split("->", 1)
    return src, dst.split("<", 1)[0]


def write_mib(circuit: Circuit, out_dir: str | Path, task: str, model: str, d_model: int) -> Path:
    """Write `out_dir/{task}_{model}/importances.json` atomically; returns its path."""
    path = Path(out_dir) / folder_name(task, model) / FILE_NAME
    text = json.dumps(to_mib(circuit, d_model))
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic(path, lambda tmp: Path(tmp).write_text(text))
    return path


def from_mib(data: object, graph: EdgeGraph, source: str = "MIB file") -> Circuit:
    """A Circuit of `graph` from MIB's JSON (scores and membership of every edge). ValueError names the problem."""
    _check_graph(graph)
    if not isinstance(data, dict) or not {"cfg", "nodes", "edges"} <= set(data):
        raise ValueError(f"{source}: not an MIB circuit (needs the keys 'cfg', 'nodes' and 'edges')")
    cfg, edges = data["cfg"], data["edges"]
    if not isinstance(cfg, dict) or not isinstance(edges, dict):
        raise ValueError(f"{source}: 'cfg' and 'edges' must be objects")
    if (cfg.get("n_layers"), cfg.get("n_heads")) != (graph.n_layers, graph.n_heads):
        raise ValueError(f"{source}: circuit of {cfg.get('n_layers')} layers x {cfg.get('n_heads')} heads; "
                         f"the model has {graph.n_layers} x {graph.n_heads}")
    if cfg.get("parallel_attn_mlp"):
        raise ValueError(f"{source}: parallel attention/MLP graphs are not supported (our MLPs read their layer's heads)")
    scores = torch.zeros(graph.n_src, graph.n_dst)
    keep = torch.zeros(graph.n_src, graph.n_dst, dtype=torch.bool)
    seen = torch.zeros_like(keep)
    for name, info in edges.items():
        try:
            i, j = graph.edge_index(name)
        except KeyError as e:
            raise ValueError(f"{source}: {e.args[0]}") from None
        if not isinstance(info, dict) or not isinstance(info.get("in_graph"), bool):
            raise ValueError(f"{source}: edge {name!r} needs a boolean 'in_graph'")
        score = info.get("score", 0.0)   # binary circuits carry no scores (MIB reads them as 0)
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
            raise ValueError(f"{source}: edge {name!r} has score {score!r}; expected a finite number")
        scores[i, j], keep[i, j], seen[i, j] = float(score), info["in_graph"], True
    missing = graph.real_edges & ~seen
    if missing.any():
        names = graph.edges(missing)
        raise ValueError(f"{source}: {len(names)} of the graph's {graph.n_edges} edges are missing "
                         f"(first: {', '.join(names[:3])})")
    return Circuit(graph, scores, keep, None, {"method": "mib-import", "source": source})


def read_mib(path: str | Path, graph: EdgeGraph) -> Circuit:
    path = Path(path)
    if path.suffix == ".pt":
        raise ValueError(f"{path}: MIB's .pt circuits are pickles, which this tool never loads; export the circuit "
                         "as MIB's JSON instead (EAP-IG: graph.to_json)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a readable JSON file ({e})") from None
    return from_mib(data, graph, str(path))


# ---------------------------------------------------------------- CPR and CMD as MIB's evaluator computes them
@dataclass(frozen=True)
class MIBScore:
    """One circuit's MIB faithfulness curve. Lists are aligned with `sizes`."""

    sizes: tuple[float, ...]
    n_selected: tuple[int, ...]      # int(share * n_edges) edges of largest |score|
    n_kept: tuple[int, ...]          # after dangling edges are dropped
    faithfulness: tuple[float, ...]
    cpr: float                       # area under f (higher is better)
    cmd: float                       # area under |1 - f| (lower is better)
    m_full: float                    # logit difference of the model
    m_empty: float                   # ... of the corrupted run (no edge kept)
    n_examples: int

    def to_dict(self) -> dict:
        return asdict(self)


def areas(faithfulness: list[float] | tuple[float, ...], sizes: tuple[float, ...] = MIB_SIZES) -> tuple[float, float]:
    """(CPR, CMD): trapezoid areas of f and of |1 - f| over the (linear) sizes, as the evaluator sums them."""
    if len(faithfulness) != len(sizes):
        raise ValueError(f"{len(faithfulness)} faithfulness values for {len(sizes)} sizes")
    cpr = cmd = 0.0
    for i in range(len(sizes) - 1):
        dx = sizes[i + 1] - sizes[i]
        cpr += dx * (faithfulness[i] + faithfulness[i + 1]) / 2
        cmd += dx * (abs(1.0 - faithfulness[i]) + abs(1.0 - faithfulness[i + 1])) / 2
    return cpr, cmd


def mib_selections(circuit: Circuit, sizes: tuple[float, ...] = MIB_SIZES) -> list[Circuit]:
    """The evaluator's circuit at each size: the int(share * n) edges of largest |score| (ties in edge order),
    dangling edges dropped."""
    g = circuit.graph
    ranked = replace(circuit, scores=circuit.scores.abs())
    return [ranked.top_n(int(p * g.n_edges)).prune_dangling() for p in sizes]


@torch.no_grad()
def mib_score(model: MaskedTransformer, task: Task, circuit: Circuit, split: str = "test",
              n_examples: int | None = None, ablation: str = "interchange", batch_size: int = 32,
              sizes: tuple[float, ...] = MIB_SIZES) -> MIBScore:
    """Faithfulness at MIB's sizes, CPR and CMD of `circuit`'s scores on `task` (logit difference, as MIB).

    Raises:
        ValueError: another graph, a task without answer/distractor tokens, or a corruption that leaves the
            logit difference unchanged (faithfulness undefined: n/a).
    """
    if not circuit.graph.same_as(model.graph):
        raise ValueError(f"circuit graph {circuit.graph.to_dict()} does not match the model's {model.graph.to_dict()}")
    data = scoring_data(task, split, n_examples)
    if not bool((data.bad >= 0).any()):
        raise ValueError(f"task {task.name!r} has no distractor tokens: MIB's logit difference is undefined for it")
    chosen = mib_selections(circuit, sizes)
    g = model.graph
    settings = torch.stack([torch.zeros_like(g.real_edges), g.real_edges, *[c.keep for c in chosen]]).float()
    sums = torch.zeros(len(settings), dtype=torch.float64)
    for part in batches(data, batch_size):
        good, bad = part.good.to(model.device), part.bad.to(model.device)
        out = evaluate_keeps(model, part, settings, corrupted(model, part, ablation),
                             lambda lg, good=good, bad=bad: logit_diff(lg[:, 0], good, bad))
        sums += out.double().cpu().sum(-1)
    m = (sums / len(data)).tolist()
    m_empty, m_full = m[0], m[1]
    if not math.isfinite(m_full - m_empty) or abs(m_full - m_empty) <= 1e-6 * max(1.0, abs(m_full)):
        raise ValueError(f"faithfulness is n/a on task {task.name!r}: the corrupted run's logit difference equals "
                         f"the model's ({m_full:.4g} vs {m_empty:.4g})")
    f = [(x - m_empty) / (m_full - m_empty) for x in m[2:]]
    cpr, cmd = areas(f, sizes)
    return MIBScore(tuple(sizes), tuple(int(p * g.n_edges) for p in sizes), tuple(c.n_edges for c in chosen),
                    tuple(f), cpr, cmd, m_full, m_empty, len(data))


def score_table(s: MIBScore) -> str:
    """The per-size faithfulness and the two areas, as text."""
    rows = [f"{'share':>7} {'selected':>8} {'kept':>6} {'faithfulness':>12}"]
    rows += [f"{p:>7.3f} {k:>8} {n:>6} {f:>12.4f}" for p, k, n, f in zip(s.sizes, s.n_selected, s.n_kept, s.faithfulness)]
    rows.append(f"CPR {s.cpr:.4f} (higher is better)   CMD {s.cmd:.4f} (lower is better)   "
                f"logit difference: model {s.m_full:.4f}, corrupted {s.m_empty:.4f}, {s.n_examples} examples")
    return "\n".join(rows)

