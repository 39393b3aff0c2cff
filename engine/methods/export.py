"""Per-edge score files: every real edge's score (and signed attribution) as JSON, named by our edge ids.

Format (`schema` "circuit-explorer/edge-scores", `version` 1), one JSON object:

    {
      "schema": "circuit-explorer/edge-scores", "version": 1,
      "method": "eap", "model": "...", "config_hash": "...", "task": "ioi",
      "graph": {"n_layers": 2, "n_heads": 4, "n_kv_heads": null, "split_embeddings": false},
      "score_meaning": "what a score is, in words",
      "config": {...the method's hyper-parameters...},
      "edges": {
        "input->a0.h0<q>": {"score": 0.0123, "signed": -0.0123, "in_graph": true},
        ...
      }
    }

Edge ids are `src->dst` with `<q|k|v>` on attention readers (EdgeGraph ids; nodes `input` or `tok`/`pos`,
`a{L}.h{H}`, `m{L}`, `logits`, and `a{L}.kv{G}` readers under grouped-query attention). `edges` lists every
real edge, in graph order. `score` ranks edges (higher = more important; EAP/EAP-IG: |attribution|; ACDC:
KL change when tried; Edge Pruning: the deterministic gate). `signed` is present for attribution methods
(positive = the edge pushes the task metric up). `in_graph` is the circuit's selection. The `edges` object
has the shape EAP-IG and the MIB circuit track read (`{"edges": {id: {"score", "in_graph"}}}`).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..circuit import Circuit
from ..graph import EdgeGraph

SCORES_SCHEMA = "circuit-explorer/edge-scores"
SCORES_VERSION = 1


def scores_to_json(circuit: Circuit) -> dict:
    """The documented per-edge score object of `circuit` (see the module docstring)."""
    g = circuit.graph
    signed = json.loads(circuit.meta["signed_scores"]) if "signed_scores" in circuit.meta else None
    edges = {}
    for n, (i, j) in enumerate(g.real_edges.nonzero().tolist()):
        entry = {"score": float(circuit.scores[i, j])}
        if signed is not None:
            entry["signed"] = float(signed[n])
        entry["in_graph"] = bool(circuit.keep[i, j])
        edges[g.edge_id(i, j)] = entry
    meta = circuit.meta
    config = meta.get("config") or meta.get("prune_config") or "{}"
    return {"schema": SCORES_SCHEMA, "version": SCORES_VERSION, "method": meta.get("method", ""),
            "model": meta.get("model", ""), "config_hash": meta.get("config_hash", ""), "task": meta.get("task", ""),
            "graph": g.to_dict(), "score_meaning": meta.get("score_meaning", ""), "config": json.loads(config),
            "edges": edges}


def save_scores_json(circuit: Circuit, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(scores_to_json(circuit), indent=1))
    tmp.replace(path)
    return path


def load_scores_json(path: str | Path, graph: EdgeGraph | None = None) -> Circuit:
    """A Circuit from a score file (scores and selection; the graph from the file unless given).

    Raises:
        ValueError: unreadable file, wrong schema, unknown edge ids, or a non-finite score.
    """
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a readable JSON file ({e})") from None
    if not isinstance(data, dict) or data.get("schema") != SCORES_SCHEMA or data.get("version") != SCORES_VERSION:
        raise ValueError(f"{path}: not a {SCORES_SCHEMA} v{SCORES_VERSION} file")
    try:
        graph = graph or EdgeGraph.from_dict(data["graph"])
        scores, keep = torch.zeros(graph.n_src, graph.n_dst), torch.zeros(graph.n_src, graph.n_dst, dtype=torch.bool)
        for edge, entry in data["edges"].items():
            i, j = graph.edge_index(edge)
            scores[i, j], keep[i, j] = float(entry["score"]), bool(entry.get("in_graph", False))
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: bad score file ({e})") from None
    if not torch.isfinite(scores).all():
        raise ValueError(f"{path}: scores must be finite numbers")
    meta = {k: str(data.get(k, "")) for k in ("method", "model", "config_hash", "task", "score_meaning")}
    return Circuit(graph, scores, keep, None, meta)
