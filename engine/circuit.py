"""Circuit: an immutable selection of edges with their scores; thresholds, set operations, files."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from .graph import EdgeGraph, dst_node

FORMAT_VERSION = "1"
EDGES_SCHEMA_VERSION = 1


@dataclass(frozen=True, eq=False)  # eq=False: dataclass __eq__ on tensors is ambiguous
class Circuit:
    """A selection of edges of an EdgeGraph plus the scores that produced it. Never mutated.

    scores:      float [n_src, n_dst]; higher = more important (Edge Pruning: the deterministic gate).
    keep:        bool  [n_src, n_dst]; True = edge in the circuit (only real edges are ever True).
    node_scores: float [n_src] or None; the writer-node gates when the run learned them.
    meta:        str -> str; model, config hash, task, hyper-parameters (JSON), metrics (JSON), ...
    """

    graph: EdgeGraph
    scores: Tensor
    keep: Tensor
    node_scores: Tensor | None = None
    meta: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        shape = (self.graph.n_src, self.graph.n_dst)
        if tuple(self.scores.shape) != shape or tuple(self.keep.shape) != shape:
            raise ValueError(f"scores and keep must have shape {shape}, got "
                             f"{tuple(self.scores.shape)} and {tuple(self.keep.shape)}")
        if self.node_scores is not None and tuple(self.node_scores.shape) != (self.graph.n_src,):
            raise ValueError(f"node_scores must have shape ({self.graph.n_src},)")
        if torch.isnan(self.scores).any():
            raise ValueError("circuit scores contain NaN")
        keep = self.keep.detach().cpu().bool() & self.graph.real_edges
        object.__setattr__(self, "keep", keep)
        object.__setattr__(self, "scores", self.scores.detach().cpu().float())
        object.__setattr__(self, "meta", dict(self.meta))

    # ---- construction ----
    @classmethod
    def full(cls, graph: EdgeGraph, meta: Mapping[str, str] | None = None) -> Circuit:
        """Every edge kept (the model itself)."""
        ones = graph.real_edges.float()
        return cls(graph, ones, graph.real_edges.clone(), meta=meta or {"method": "full"})

    @classmethod
    def empty(cls, graph: EdgeGraph, meta: Mapping[str, str] | None = None) -> Circuit:
        """No edge kept (the corrupted run)."""
        return cls(graph, torch.zeros(graph.n_src, graph.n_dst), torch.zeros_like(graph.real_edges),
                   meta=meta or {"method": "empty"})

    @classmethod
    def from_edges(cls, graph: EdgeGraph, edges: list[str] | list[tuple[str, str]],
                   meta: Mapping[str, str] | None = None) -> Circuit:
        """A binary circuit from edge ids (`'a0.h1->m2'`) or `[src, dst]` pairs."""
        keep = torch.zeros_like(graph.real_edges)
        for e in edges:
            i, j = graph.edge_index(e if isinstance(e, str) else f"{e[0]}->{e[1]}")
            keep[i, j] = True
        return cls(graph, keep.float(), keep, meta=meta or {})

    # ---- views ----
    @property
    def n_edges(self) -> int:
        return int(self.keep.sum())

    @property
    def sparsity(self) -> float:
        return 1.0 - self.n_edges / self.graph.n_edges

    @property
    def circuit_id(self) -> str:
        """Content hash of graph, scores and selection: a stable cache key."""
        h = hashlib.sha256(json.dumps(self.graph.to_dict(), sort_keys=True).encode())
        h.update(self.scores.numpy().tobytes())
        h.update(self.keep.numpy().tobytes())
        return h.hexdigest()[:16]

    def edges(self) -> list[str]:
        return self.graph.edges(self.keep)

    def edge_scores(self) -> dict[str, float]:
        """Score of every kept edge, by id."""
        idx = self.keep.nonzero().tolist()
        return {self.graph.edge_id(i, j): float(self.scores[i, j]) for i, j in idx}

    def nodes(self) -> list[str]:
        """Nodes touched by a kept edge (writers and reader nodes), in graph order."""
        used = set()
        for i, j in self.keep.nonzero().tolist():
            used.add(self.graph.src_names[i])
            used.add(dst_node(self.graph.dst_names[j]))
        return [n for n in self.graph.nodes if n in used]

    def keep_float(self) -> Tensor:
        return self.keep.float()

    # ---- selection: every method returns a new Circuit ----
    def _ranked(self) -> Tensor:
        return self.scores.masked_fill(~self.graph.real_edges, float("-inf")).flatten()

    def threshold(self, t: float) -> Circuit:
        """Keep the real edges with score >= t."""
        return replace(self, keep=(self.scores >= t) & self.graph.real_edges,
                       meta={**self.meta, "selection": json.dumps({"threshold": float(t)})})

    def top_n(self, n: int) -> Circuit:
        """Keep exactly the n highest-scoring real edges (ties broken by edge order)."""
        if not 0 <= n <= self.graph.n_edges:
            raise ValueError(f"n must be in [0, {self.graph.n_edges}], got {n}")
        order = torch.sort(self._ranked(), descending=True, stable=True).indices
        keep = torch.zeros(self.graph.n_src * self.graph.n_dst, dtype=torch.bool)
        keep[order[:n]] = True
        return replace(self, keep=keep.view_as(self.keep),
                       meta={**self.meta, "selection": json.dumps({"edges": int(n)})})

    def with_sparsity(self, sparsity: float) -> Circuit:
        """Keep exactly round((1 - sparsity) * n_edges) edges."""
        if not 0.0 <= sparsity <= 1.0:
            raise ValueError(f"sparsity must be in [0, 1], got {sparsity}")
        c = self.top_n(round((1.0 - sparsity) * self.graph.n_edges))
        return replace(c, meta={**c.meta, "selection": json.dumps({"sparsity": float(sparsity)})})

    def find_threshold(self, n: int, iters: int = 60) -> float:
        """Binary search the largest score threshold keeping at least n edges."""
        real = self.scores[self.graph.real_edges]
        if n <= 0:
            return float(real.max()) + 1.0
        lo, hi = float(real.min()), float(real.max())
        if int((real >= hi).sum()) >= n:
            return hi
        for _ in range(iters):
            mid = (lo + hi) / 2
            if int((real >= mid).sum()) >= n:
                lo = mid
            else:
                hi = mid
        return lo

    def prune_dangling(self) -> Circuit:
        """Drop edges whose writer has no kept path from an input, or whose reader has none to logits."""
        return replace(self, keep=self.keep & _live_edges(self.graph, self.keep))

    def n_dangling(self) -> int:
        return self.n_edges - self.prune_dangling().n_edges

    def has_path(self) -> bool:
        """True when some kept path leads from an input node to logits."""
        return bool(self.prune_dangling().keep[:, -1].any())

    # ---- set operations between circuits of the same graph ----
    def _check_same(self, other: Circuit) -> None:
        if not self.graph.same_as(other.graph):
            raise ValueError(f"circuits come from different graphs: {self.graph.to_dict()} vs {other.graph.to_dict()}")
        for key in ("config_hash", "weights_hash"):
            a, b = self.meta.get(key), other.meta.get(key)
            if a and b and a != b:
                raise ValueError(f"circuits come from different models ({key.replace('_', ' ')} {a} vs {b})")

    def _combine(self, other: Circuit, keep: Tensor, scores: Tensor, op: str) -> Circuit:
        meta = {k: v for k, v in self.meta.items() if k in ("model", "config_hash", "weights_hash", "architecture")}
        meta.update(method=op, operands=json.dumps([self.meta.get("name", "a"), other.meta.get("name", "b")]))
        return Circuit(self.graph, scores, keep, None, meta)

    def __and__(self, other: Circuit) -> Circuit:
        self._check_same(other)
        return self._combine(other, self.keep & other.keep, torch.minimum(self.scores, other.scores), "intersection")

    def __or__(self, other: Circuit) -> Circuit:
        self._check_same(other)
        return self._combine(other, self.keep | other.keep, torch.maximum(self.scores, other.scores), "union")

    def __sub__(self, other: Circuit) -> Circuit:
        self._check_same(other)
        return self._combine(other, self.keep & ~other.keep, self.scores, "difference")

    # ---- files ----
    def save(self, path: str | Path) -> Path:
        """Write `.safetensors` (tensors + JSON-string metadata) atomically: temp file, then rename."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {"scores": self.scores, "keep": self.keep.to(torch.uint8),
                   "real_edges": self.graph.real_edges.to(torch.uint8)}
        if self.node_scores is not None:
            tensors["node_scores"] = self.node_scores.float()
        meta = {**{k: str(v) for k, v in self.meta.items()}, "format_version": FORMAT_VERSION,
                "graph": json.dumps(self.graph.to_dict())}
        _atomic(path, lambda tmp: save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()},
                                            tmp, metadata=meta))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Circuit:
        """Read a circuit file; ValueError names what is wrong with a bad one."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"{path}: no such circuit file")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = dict(f.metadata() or {})
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as e:  # safetensors raises several types for corrupt headers
            raise ValueError(f"{path}: not a readable .safetensors circuit file ({e})") from None
        version = meta.pop("format_version", None)
        if version != FORMAT_VERSION:
            raise ValueError(f"{path}: unknown circuit format version {version!r} (this version reads {FORMAT_VERSION!r})")
        try:
            graph = EdgeGraph.from_dict(json.loads(meta.pop("graph")))
            circuit = cls(graph, tensors["scores"], tensors["keep"].bool(), tensors.get("node_scores"), meta)
        except (KeyError, TypeError, json.JSONDecodeError, ValueError) as e:
            raise ValueError(f"{path}: malformed circuit file ({e})") from None
        if not torch.equal(tensors["real_edges"].bool(), graph.real_edges):
            raise ValueError(f"{path}: the stored edge mask does not match its graph")
        return circuit

    def to_edges_json(self, include_scores: bool = True) -> dict:
        """Interchange format: `{"schema_version", "graph", "model", "edges": [[src, dst], ...]}`."""
        pairs = [e.split("->", 1) for e in self.edges()]
        out = {"schema_version": EDGES_SCHEMA_VERSION, "graph": self.graph.to_dict(),
               "model": self.meta.get("model", ""), "config_hash": self.meta.get("config_hash", ""),
               "edges": pairs}
        if include_scores:
            out["scores"] = [float(self.scores[self.graph.edge_index(f"{s}->{d}")]) for s, d in pairs]
        return out

    def save_edges_json(self, path: str | Path) -> Path:
        path = Path(path)
        text = json.dumps(self.to_edges_json(), indent=1)
        _atomic(path, lambda tmp: Path(tmp).write_text(text))
        return path

    @classmethod
    def load_edges_json(cls, path: str | Path, graph: EdgeGraph | None = None) -> Circuit:
        """Read an `edges.json`; the graph comes from the file unless given."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: not a readable JSON file ({e})") from None
        if not isinstance(data, dict) or data.get("schema_version") != EDGES_SCHEMA_VERSION:
            raise ValueError(f"{path}: unknown edges.json schema version "
                             f"{data.get('schema_version') if isinstance(data, dict) else None!r}")
        try:
            graph = graph or EdgeGraph.from_dict(data["graph"])
            circuit = cls.from_edges(graph, [tuple(e) for e in data["edges"]],
                                     {"model": data.get("model", ""), "config_hash": data.get("config_hash", "")})
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path}: bad edges.json ({e})") from None
        if "scores" in data and len(data["scores"]) == len(data["edges"]):
            scores = circuit.scores.clone()
            for (s, d), v in zip(data["edges"], data["scores"]):
                scores[graph.edge_index(f"{s}->{d}")] = float(v)
            circuit = replace(circuit, scores=scores)
        return circuit


def _atomic(path: Path, write) -> None:
    """Write via a temp file in the same folder and rename, so a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def reader_owners(graph: EdgeGraph) -> list[list[int]]:
    """For each reader, the writer indices whose computation it feeds (logits: none)."""
    owners: list[list[int]] = []
    group = graph.n_heads // graph.kv_heads
    for name in graph.dst_names:
        node = dst_node(name)
        if node == "logits":
            owners.append([])
        elif ".kv" in node:
            layer, g = node[1:].split(".kv")
            owners.append([graph.src_index(f"a{layer}.h{h}") for h in range(int(g) * group, (int(g) + 1) * group)])
        else:
            owners.append([graph.src_index(node)])
    return owners


def _live_edges(graph: EdgeGraph, keep: Tensor) -> Tensor:
    """[n_src, n_dst] bool: edges on some kept path from an input node to logits."""
    owners = reader_owners(graph)
    n_in = len(graph.input_nodes)
    feeds = [[] for _ in range(graph.n_src)]  # writer -> readers that compute it
    for j, own in enumerate(owners):
        for i in own:
            feeds[i].append(j)
    alive = torch.zeros(graph.n_src, dtype=torch.bool)
    alive[:n_in] = True
    for i in range(n_in, graph.n_src):
        alive[i] = bool((keep[:, feeds[i]] & alive[:, None]).any())
    useful_dst = torch.zeros(graph.n_dst, dtype=torch.bool)
    useful_dst[-1] = True
    useful_src = torch.zeros(graph.n_src, dtype=torch.bool)
    for i in range(graph.n_src - 1, -1, -1):  # a writer's readers belong to later writers, already visited
        useful_src[i] = bool((keep[i] & useful_dst).any())
        for j in feeds[i]:
            useful_dst[j] = useful_dst[j] or bool(useful_src[i])
    return alive[:, None] & useful_dst[None, :] & keep
