"""Where the shipped models live: embedded checkpoints (assets/models) and Tracr programs (assets/tracr); no torch."""

from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).resolve().parent.parent / "assets"
MODELS = ASSETS / "models"
TRACR = ASSETS / "tracr"


def _folders(root: Path) -> dict[str, Path]:
    if not root.is_dir():
        return {}
    return {p.name: p for p in sorted(root.iterdir()) if (p / "config.json").is_file()}


def embedded_models() -> dict[str, Path]:
    """Models shipped in assets/models/, by name."""
    return _folders(MODELS)


def tracr_models() -> dict[str, Path]:
    """Compiled programs shipped in assets/tracr/, by name."""
    return _folders(TRACR)
