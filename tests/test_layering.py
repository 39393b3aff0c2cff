"""Import direction: pages -> explorer -> engine; engine never imports UI libraries."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "engine": {"streamlit", "plotly", "pyvis", "networkx", "explorer", "pages", "app_pages"},
    "explorer/graph_view.py": {"streamlit"}, "explorer/pyvis_html.py": {"streamlit"},
    "explorer/charts.py": {"streamlit"}, "explorer/theme.py": {"streamlit"}, "explorer/memory_note.py": {"streamlit"},
    "explorer/frontier.py": {"streamlit"},
    "explorer/runs.py": {"streamlit"}, "explorer/jobs.py": {"streamlit"}, "explorer/run_worker.py": {"streamlit"},
    "explorer/layout.py": {"streamlit"}, "explorer/inspector.py": {"streamlit"}, "explorer/overlap.py": {"streamlit"},
}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_import_direction():
    for target, banned in FORBIDDEN.items():
        path = ROOT / target
        files = path.rglob("*.py") if path.is_dir() else [path] if path.exists() else []
        for f in files:
            bad = _imports(f) & banned
            assert not bad, f"{f.relative_to(ROOT)} imports {sorted(bad)}"


def test_engine_never_unpickles():
    for f in (ROOT / "engine").rglob("*.py"):
        text = f.read_text()
        assert "torch.load(" not in text and "pickle" not in _imports(f), f"{f} may unpickle"


def test_first_page_imports_no_torch():
    """app.py and the Prune page draw their title and form before torch (seconds to import) has loaded."""
    import subprocess
    import sys

    code = ("import sys; import engine, engine.config, engine.assets; "
            "from explorer import jobs, library, prune_widgets, resources, state, widgets; "
            "engine.PruneConfig(); engine.embedded_models(); resources.model_choices(); "
            "heavy = sorted({'torch', 'networkx', 'pyvis', 'transformers'} & set(sys.modules)); "
            "assert not heavy, heavy")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]


def test_engine_exports_resolve_like_eager_imports():
    """engine/__init__ loads names on first use; its table matches the TYPE_CHECKING imports, and
    `engine.prune` / `engine.evaluate` stay the functions even after their modules are imported directly."""
    import importlib

    import engine

    tree = ast.parse((ROOT / "engine" / "__init__.py").read_text())
    typed = {(a.asname or a.name): (f".{n.module}", a.name) for n in ast.walk(tree)
             if isinstance(n, ast.ImportFrom) and n.level == 1 for a in n.names}
    assert typed == engine._EXPORTS
    importlib.import_module("engine.prune")
    importlib.import_module("engine.evaluate")
    assert callable(engine.prune) and callable(engine.evaluate)
    from engine import evaluate, prune
    assert callable(prune) and callable(evaluate)
    for name in engine.__all__:
        assert getattr(engine, name) is not None, name
    assert engine.tracr.TRACR_PRUNE.ablation == "zero"  # submodules still reachable as attributes
