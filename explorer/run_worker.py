"""`python -m explorer.run_worker <run folder>`: one app pruning run in a process of its own (pure, no streamlit).

The app starts small models' runs here rather than in a server thread: a thread shares the server's interpreter
lock, and every redraw of a watching page then stalled the run's steps (bench/watch_cost.py: 5x fewer steps per
second while watched on the busy machine). The process reads `request.json` in the run's folder, loads the model
and task as the app does, and runs explorer.jobs.prune_job on the record the server created; the page follows
the record, and Cancel reaches the process through the run folder's `cancel` file.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from .jobs import prune_job
from .library import Library
from .runs import RunStore, process_token


def _model_and_task(req: dict):  # noqa: ANN202
    import torch  # noqa: PLC0415 - after the record says the worker started

    import engine  # noqa: PLC0415

    task, split = req["task"], bool(req["task"].get("split"))  # split: separate token and position writers
    if task["kind"] == "tracr":
        model = engine.tracr.load_tracr_model(task["program"], split_embeddings=split)[0]
    else:
        model = engine.load_model(req["model_source"], device=None, split_embeddings=split)
    model = model.eval().requires_grad_(False)
    if "OMP_NUM_THREADS" not in os.environ and engine.runtime.is_small_model(model.cfg):
        torch.set_num_threads(1)  # as the app's own threads (explorer.resources._tune_threads)
    if task["kind"] == "tracr":
        return model, engine.load_tracr(task["program"], seed=task["seed"])[2]
    if task["kind"] == "jsonl":
        return model, engine.load_jsonl_task(Path(req["run_dir"]) / "data.jsonl", model.tokenizer, model.cfg.n_ctx,
                                             name=Path(task["file"]).stem)
    return model, engine.get_task(task["name"], model.tokenizer, n=task["n"], seed=task["seed"],
                                  n_ctx=model.cfg.n_ctx)


def main(run_dir: str) -> int:
    folder = Path(run_dir)
    req = {**json.loads((folder / "request.json").read_text()), "run_dir": str(folder)}
    store = RunStore(req["library"])
    record = {**(store.read(folder.name) or {}), "process": process_token()}
    try:
        import engine  # noqa: PLC0415

        from engine.budget_spec import Budget  # noqa: PLC0415

        model, task = _model_and_task(req)
        budget = Budget(**record["budget"]) if record.get("budget") else None
        job = prune_job(model, task, engine.PruneConfig.from_dict(req["cfg"]), req["model_name"],
                        Library(req["library"]), data=req["task"].get("file", ""), record=record, budget=budget)
        job.wait()
    except Exception as e:  # the model or data could not be loaded: the page shows why
        store.write({**record, "state": "failed", "error": f"{type(e).__name__}: {e}"})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
