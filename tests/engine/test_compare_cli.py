"""`python -m engine compare-methods`: a table of every method, circuits and score files written, clear errors."""

import json

import torch

from engine.__main__ import main
from tests.engine.test_cli import _jsonl, _pair, checkpoint  # noqa: F401 — the fixture is reused


def _run(capsys, *args: str):  # noqa: ANN001, ANN202
    """In-process (a subprocess re-imports torch and transformers: ~10 s on the shared machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code = main(list(args))
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_compare_methods_cli(checkpoint, tmp_path, capsys):  # noqa: ANN001, F811
    data = _jsonl(tmp_path / "d.jsonl", [_pair("mary", "john"), _pair("john", "mary")] * 6)
    out = tmp_path / "cmp"
    code, stdout, stderr = _run(capsys, "compare-methods", "--model", str(checkpoint), "--data", str(data), "--device", "cpu",
             "--methods", "edge-pruning,eap,eap-ig,acdc,random", "--steps", "10", "--edge-sparsity", "0.5",
             "--sparsities", "0.9", "0.5", "--random-draws", "2", "--out", str(out))
    assert code == 0, stderr
    for name in ("edge-pruning", "eap", "eap-ig", "random", "CPR", "CMD", "random x2"):
        assert name in stdout
    ran = json.loads((out / "comparison.json").read_text())
    for run in ran["runs"]:
        assert (out / f"{run['label']}.safetensors").is_file()
        assert json.loads((out / f"{run['label']}.scores.json").read_text())["method"] == run["method"]
    assert ran["random"]["sizes"] == [0.1, 0.5, 1.0]


def test_compare_methods_unknown_method(checkpoint, tmp_path, capsys):  # noqa: ANN001, F811
    data = _jsonl(tmp_path / "d.jsonl", [_pair("mary", "john"), _pair("john", "mary")] * 6)
    code, _, stderr = _run(capsys, "compare-methods", "--model", str(checkpoint), "--data", str(data),
                           "--methods", "eap,acdcc")
    assert code == 2 and "acdcc" in stderr and "eap-ig" in stderr


def test_lr_flags_mean_what_prune_means():
    """--lr is the gates' learning rate only (as in `prune`); --lr-lambdas the multipliers'. Planted bug caught: --lr
    also setting the multipliers' rate (the old behaviour, which the help text did not say)."""
    from engine.__main__ import parser
    from engine.compare_cli import _options

    args = parser().parse_args(["compare-methods", "--model", "m", "--task", "ioi", "--lr", "0.3"])
    ep = _options(args)["edge-pruning"]
    assert ep["lr_gates"] == 0.3 and "lr_lambdas" not in ep
    args = parser().parse_args(["compare-methods", "--model", "m", "--task", "ioi", "--lr-lambdas", "0.05"])
    assert _options(args)["edge-pruning"]["lr_lambdas"] == 0.05 and "lr_gates" not in _options(args)["edge-pruning"]
