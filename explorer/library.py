"""The circuit library: a folder of circuit files plus JSON sidecars; list, save, load. Never overwrites."""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from safetensors import safe_open

import engine

from .runs import RUNS_DIR

if TYPE_CHECKING:
    from engine import Circuit

ENV_FOLDER = "CIRCUIT_LIBRARY"
ENV_EXAMPLES = "CIRCUIT_EXAMPLES"
REPO = Path(__file__).resolve().parents[1]
DEFAULT_EXAMPLES = REPO / "assets" / "circuits"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def circuit_bytes(circuit: Circuit) -> bytes:
    """The circuit file's bytes (for a download), written through a temporary folder."""
    with tempfile.TemporaryDirectory() as tmp:
        return circuit.save(Path(tmp) / "c.safetensors").read_bytes()


def slug(name: str) -> str:
    """A file-safe name: letters, digits, `.`, `_`, `-`; never empty, never hidden, at most 80 characters."""
    s = _UNSAFE.sub("-", name.strip()).strip(".-")[:80]
    return s or "circuit"


@dataclass(frozen=True)
class Entry:
    """One circuit in the library (or a read-only example shipped with the project)."""

    name: str
    path: Path
    info: dict = field(default_factory=dict)
    read_only: bool = False

    @property
    def label(self) -> str:
        bits = [self.name + (" (example)" if self.read_only else "")]
        if self.info.get("model"):
            bits.append(Path(str(self.info["model"])).name or str(self.info["model"]))
        if self.info.get("task"):
            bits.append(str(self.info["task"]))
        if self.info.get("n_edges") is not None:
            bits.append(f"{self.info['n_edges']} edges")
        return " · ".join(bits)


def _read_info(path: Path) -> dict:
    side = path.with_suffix(".json")
    if side.is_file():
        try:
            data = json.loads(side.read_text())
            if isinstance(data, dict):
                return data
        except (OSError, json.JSONDecodeError):
            pass
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
    except Exception:  # a damaged file still lists; loading it reports the problem
        return {"error": "unreadable circuit file"}
    return {k: meta[k] for k in ("model", "task", "name", "method") if k in meta}


class Library:
    """Circuits saved as `<name>.safetensors` + `<name>.json` (summary, prune log) in one folder.

    Args:
        folder: where new circuits go; default `$CIRCUIT_LIBRARY` or `circuits/`.
        examples: read-only example circuits; default `$CIRCUIT_EXAMPLES` or `assets/circuits/`.
    """

    def __init__(self, folder: str | Path | None = None, examples: str | Path | None = None) -> None:
        self.folder = Path(folder or os.environ.get(ENV_FOLDER) or "circuits")
        self.examples = Path(examples or os.environ.get(ENV_EXAMPLES) or DEFAULT_EXAMPLES)

    def _scan(self, folder: Path, read_only: bool) -> list[Entry]:
        if not folder.is_dir():
            return []
        files = [p for p in folder.rglob("*.safetensors") if p.stat().st_size > 0 and not p.name.startswith(".")
                 and (read_only or p.relative_to(folder).parts[0] != RUNS_DIR)]  # runs/: records, unsaved results
        files.sort(key=lambda p: p.stat().st_mtime, reverse=not read_only)
        if read_only:
            files.sort(key=lambda p: str(p.relative_to(folder)))
        return [Entry(str(p.relative_to(folder).with_suffix("")), p, _read_info(p), read_only) for p in files]

    def entries(self) -> list[Entry]:
        """The user's circuits, newest first, then the examples."""
        return self._scan(self.folder, False) + self._scan(self.examples, True)

    def get(self, name: str) -> Entry:
        for e in self.entries():
            if e.name == name:
                return e
        raise KeyError(f"no circuit named {name!r} in {self.folder} or {self.examples}")

    def load(self, entry: Entry | str) -> Circuit:
        """Read a circuit; ValueError for a damaged file (the file is left as it is)."""
        entry = self.get(entry) if isinstance(entry, str) else entry
        circuit = engine.Circuit.load(entry.path)
        return circuit if circuit.meta.get("name") else replace(circuit, meta={**circuit.meta, "name": entry.name})

    def _reserve(self, stem: str) -> Path:
        """Create `<stem>[-N].safetensors` exclusively, so two sessions never pick the same file."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for n in range(1, 10_000):
            path = self.folder / (f"{stem}.safetensors" if n == 1 else f"{stem}-{n}.safetensors")
            if path.with_suffix(".json").exists():
                continue
            try:
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                return path
            except FileExistsError:
                continue
        raise ValueError(f"too many circuits named {stem!r} in {self.folder}")

    def save(self, circuit: Circuit, name: str, info: dict | None = None) -> Entry:
        """Save under a new name (`name`, else `name-2`, `name-3`, ...); returns the entry written."""
        path = self._reserve(slug(name))
        try:
            circuit = replace(circuit, meta={**circuit.meta, "name": path.stem})
            circuit.save(path)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        summary = {"name": path.stem, "model": circuit.meta.get("model", ""), "task": circuit.meta.get("task", ""),
                   "n_edges": circuit.n_edges, "sparsity": round(circuit.sparsity, 6),
                   "created": time.strftime("%Y-%m-%d %H:%M:%S"), **(info or {})}
        side = path.with_suffix(".json")
        tmp = side.with_name(f".{side.name}.tmp")
        tmp.write_text(json.dumps(summary, indent=1, default=str))
        os.replace(tmp, side)
        return Entry(path.stem, path, summary, False)
