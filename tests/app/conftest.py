"""Point the app at a tiny random GPT-2 (word tokenizer) and a fresh circuit library for every test."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from . import tiny_setup

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def tiny_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for the app: the tiny model (built once, kept in pytest's cache), examples, a library."""
    key = hashlib.sha256((HERE / "tiny_setup.py").read_bytes()
                         + (tiny_setup.ROOT / "scripts" / "word_tokenizer.py").read_bytes()).hexdigest()[:12]
    # Built once per machine (content-keyed, renamed into place whole), since the tokenizer takes seconds.
    cached = Path(tempfile.gettempdir()) / "circuit-explorer-tests" / f"tiny_{key}"
    if not (cached / "tiny" / "config.json").is_file():
        build = tmp_path_factory.mktemp("tiny_build")
        tiny_setup.make_env(build)
        cached.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(build, cached)
        except OSError:  # another run got there first
            shutil.rmtree(build, ignore_errors=True)
    root = tmp_path_factory.mktemp("explorer_env")
    return {"CIRCUIT_EXPLORER_MODELS": f"tiny={cached / 'tiny'}", "CIRCUIT_EXAMPLES": str(cached / "examples"),
            "CIRCUIT_LIBRARY": str(root / "library")}


@pytest.fixture()
def app_env(tiny_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    # runs in server threads: a worker process per run costs a torch import (tests/app/test_runs.py has one)
    env = {**tiny_env, "CIRCUIT_LIBRARY": str(tmp_path / "library"), "CIRCUIT_EXPLORER_RUN_IN": "thread"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


def env_for_subprocess(env: dict[str, str]) -> dict[str, str]:
    return {**os.environ, **env}


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """Tiny models gain nothing from intra-op threads; on a shared CPU, two threads ran 20x slower here."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def short_lessons(monkeypatch: pytest.MonkeyPatch) -> None:
    from explorer import lessons

    monkeypatch.setattr(lessons, "STAGE_STEPS", 6)
