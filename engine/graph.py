"""The edge graph of a transformer: writer and reader node ids, and which edges exist."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch
from torch import Tensor

QKV = ("q", "k", "v")
_EDGE_RE = re.compile(r"^(?P<src>[^\s<>-]+)->(?P<dst>[^\s<>-]+)(<(?P<qkv>[qkv])>)?$")


@dataclass(frozen=True, eq=False)
class EdgeGraph:
    """Writers (sources) and readers (destinations) of a disentangled residual stream.

    Sources, in computation order: the input writers (`input`, or `tok` and `pos`), then per layer
    the heads `a{L}.h{H}` and the MLP `m{L}`. Destinations, per layer: the q inputs of every head
    (`a{L}.h{H}<q>`), the k and v inputs of every key/value head, the MLP input `m{L}`; last `logits`.
    With grouped-query attention the k/v readers are one per key/value head, `a{L}.kv{G}<k|v>`:
    that is where the model computes keys and values, shared by the q heads of group G.

    Edge `src -> dst` is real when src is computed before dst reads. `real_edges` is the
    dense `[n_src, n_dst]` mask of real edges; every tensor of scores or gates has that shape.
    """

    n_layers: int
    n_heads: int
    n_kv_heads: int | None = None
    split_embeddings: bool = False
    src_names: tuple[str, ...] = field(init=False)
    dst_names: tuple[str, ...] = field(init=False)
    real_edges: Tensor = field(init=False)

    def __post_init__(self) -> None:
        if self.n_layers < 1 or self.n_heads < 1:
            raise ValueError(f"need n_layers, n_heads >= 1, got {self.n_layers}, {self.n_heads}")
        if self.n_heads % self.kv_heads:
            raise ValueError(f"n_heads ({self.n_heads}) must be a multiple of n_kv_heads ({self.kv_heads})")
        srcs, dsts = list(self.input_nodes), []
        for layer in range(self.n_layers):
            srcs += [f"a{layer}.h{h}" for h in range(self.n_heads)] + [f"m{layer}"]
            dsts += [f"a{layer}.h{h}<q>" for h in range(self.n_heads)]
            dsts += [f"{self.kv_node(layer, g)}<{c}>" for c in "kv" for g in range(self.kv_heads)]
            dsts += [f"m{layer}"]
        dsts.append("logits")
        real = torch.zeros(len(srcs), len(dsts), dtype=torch.bool)
        for layer in range(self.n_layers):
            cols = self.attn_dst_slice(layer)
            real[: self.n_src_before(layer), cols] = True
            real[: self.n_src_before(layer) + self.n_heads, self.mlp_dst_index(layer)] = True
        real[:, -1] = True
        object.__setattr__(self, "src_names", tuple(srcs))
        object.__setattr__(self, "dst_names", tuple(dsts))
        object.__setattr__(self, "real_edges", real)
        object.__setattr__(self, "_src_index", {n: i for i, n in enumerate(srcs)})
        object.__setattr__(self, "_dst_index", {n: i for i, n in enumerate(dsts)})

    # ---- sizes and index arithmetic (the model uses these) ----
    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def input_nodes(self) -> tuple[str, ...]:
        return ("tok", "pos") if self.split_embeddings else ("input",)

    @property
    def n_src(self) -> int:
        return len(self.src_names)

    @property
    def n_dst(self) -> int:
        return len(self.dst_names)

    @property
    def n_edges(self) -> int:
        return int(self.real_edges.sum())

    @property
    def n_attn_dst(self) -> int:
        """Readers per layer feeding attention: q per head, k and v per key/value head."""
        return self.n_heads + 2 * self.kv_heads

    def n_src_before(self, layer: int) -> int:
        """Number of writers computed before layer `layer`'s attention reads."""
        return len(self.input_nodes) + layer * (self.n_heads + 1)

    def attn_dst_slice(self, layer: int) -> slice:
        start = layer * (self.n_attn_dst + 1)
        return slice(start, start + self.n_attn_dst)

    def mlp_dst_index(self, layer: int) -> int:
        return layer * (self.n_attn_dst + 1) + self.n_attn_dst

    def kv_node(self, layer: int, group: int) -> str:
        return f"a{layer}.h{group}" if self.kv_heads == self.n_heads else f"a{layer}.kv{group}"

    # ---- ids ----
    @property
    def writer_nodes(self) -> tuple[str, ...]:
        return self.src_names

    @property
    def nodes(self) -> tuple[str, ...]:
        """Every node id: the writers, plus `logits` (and `a{L}.kv{G}` readers under GQA)."""
        extra = sorted({dst_node(d) for d in self.dst_names} - set(self.src_names), key=self.node_layer)
        return self.src_names + tuple(n for n in extra if n != "logits") + ("logits",)

    def src_index(self, name: str) -> int:
        try:
            return self._src_index[name]  # type: ignore[attr-defined]
        except KeyError:
            raise KeyError(f"unknown writer node {name!r}") from None

    def dst_index(self, name: str) -> int:
        try:
            return self._dst_index[name]  # type: ignore[attr-defined]
        except KeyError:
            raise KeyError(f"unknown reader {name!r}") from None

    def edge_id(self, src: int, dst: int) -> str:
        return f"{self.src_names[src]}->{self.dst_names[dst]}"

    def edge_index(self, edge: str) -> tuple[int, int]:
        """`'a0.h1->a3.h7<k>'` -> (src index, dst index); KeyError for unknown or unreal edges."""
        m = _EDGE_RE.match(edge.strip())
        if not m:
            raise KeyError(f"malformed edge id {edge!r}; expected 'src->dst' or 'src->dst<q|k|v>'")
        dst = m["dst"] + (f"<{m['qkv']}>" if m["qkv"] else "")
        i, j = self.src_index(m["src"]), self.dst_index(dst)
        if not self.real_edges[i, j]:
            raise KeyError(f"edge {edge!r} does not exist: {m['src']} is computed after {dst} reads")
        return i, j

    def edges(self, keep: Tensor | None = None) -> list[str]:
        """Ids of the real edges (or of those where `keep` is true), in source-major order."""
        sel = self.real_edges if keep is None else (keep.bool().cpu() & self.real_edges)
        return [self.edge_id(int(i), int(j)) for i, j in sel.nonzero().tolist()]

    def node_layer(self, node: str) -> float:
        """Vertical position: inputs -1, attention of layer L at L, MLP at L + 0.5, logits at n_layers."""
        node = dst_node(node)
        if node in ("input", "tok", "pos"):
            return -1.0
        if node == "logits":
            return float(self.n_layers)
        if node.startswith("m"):
            return int(node[1:]) + 0.5
        return float(int(node[1:].split(".")[0]))

    # ---- serialization ----
    def to_dict(self) -> dict:
        return {"n_layers": self.n_layers, "n_heads": self.n_heads, "n_kv_heads": self.n_kv_heads,
                "split_embeddings": self.split_embeddings}

    @classmethod
    def from_dict(cls, data: dict) -> EdgeGraph:
        return cls(int(data["n_layers"]), int(data["n_heads"]), data.get("n_kv_heads"),
                   bool(data.get("split_embeddings", False)))

    def same_as(self, other: EdgeGraph) -> bool:
        return self.to_dict() == other.to_dict()


def dst_node(reader: str) -> str:
    """Node id of a reader: `'a3.h7<k>'` -> `'a3.h7'`, `'m2'` -> `'m2'`."""
    return reader.split("<", 1)[0]


def count_edges(n_layers: int, n_heads: int, n_kv_heads: int | None = None, n_inputs: int = 1) -> int:
    """Closed form of the edge count (tested against EdgeGraph): GPT-2 small has 32,491."""
    kv = n_kv_heads or n_heads
    total = 0
    for layer in range(n_layers):
        before = n_inputs + layer * (n_heads + 1)
        total += (n_heads + 2 * kv) * before + before + n_heads
    return total + n_inputs + n_layers * (n_heads + 1)
