"""A run short of its sparsity target says so, by how much and what to change (engine.shortfall and the CLI)."""

from __future__ import annotations

import pytest

from engine.shortfall import CLI_NAMES, advice, floor_sparsity, target_miss

from .test_cli import _jsonl, _pair, checkpoint  # noqa: F401 - the fixture


def test_target_miss_counts_edges_not_the_ramp():
    assert target_miss(0.95, 606, 606).short == pytest.approx(0.95)          # nothing removed
    assert target_miss(0.95, 31, 606) is None                                 # 0.9488: one edge short
    assert target_miss(0.95, 30, 606) is None
    miss = target_miss(0.95, 37, 606)                                         # 0.9389, the README's lagging run
    assert miss.reached == pytest.approx(1 - 37 / 606) and miss.target_kept == 30
    assert target_miss(0.5, 6, 10) is None and target_miss(0.5, 7, 10) is not None   # one edge of ten is 0.1
    assert target_miss(1.1, 600, 606) is None                                 # above 1: as sparse as possible


def test_floor_sparsity_never_rounds_up_to_the_target():
    assert floor_sparsity(0.9499) == "0.949" and floor_sparsity(0.95) == "0.950" and floor_sparsity(0.0) == "0.000"


def test_advice_names_the_cause():
    miss = target_miss(0.95, 606, 606)
    full = advice(miss, 40, 1.0, 40, 0.95)
    assert "0.950 short of the target 0.95" in full and "606 of 606 edges" in full
    assert "--steps, e.g. 80 instead of 40" in full and "--lr-lambdas, e.g. 2 instead of 1" in full
    assert "stopped after 12 of 40 steps" in advice(miss, 40, 1.0, 12, 0.3)
    assert "--warmup shorter" in advice(miss, 40, 1.0, 40, 0.5, CLI_NAMES)
    assert "Steps, e.g." in advice(miss, 40, 1.0, 40, 0.95, {**CLI_NAMES, "steps": "Steps"})


def test_cli_summary_warns_when_the_target_is_missed(checkpoint, tmp_path, capsys):  # noqa: F811
    from engine.__main__ import main

    data = _jsonl(tmp_path / "d.jsonl", [_pair("mary", "john"), _pair("john", "mary")] * 6)
    out = tmp_path / "run"
    assert main(["prune", "--model", str(checkpoint), "--data", str(data), "--out", str(out), "--steps", "3",
                 "--batch-size", "4", "--edge-sparsity", "0.9", "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert "short of the target 0.9" in captured.err and "--steps, e.g. 6 instead of 3" in captured.err, captured.err
    assert "target 0.9)" in captured.out
