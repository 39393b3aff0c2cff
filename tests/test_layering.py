"""Import direction: pages -> explorer -> engine; engine never imports UI libraries."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "engine": {"streamlit", "plotly", "pyvis", "networkx", "explorer", "pages", "app_pages"},
    "explorer/graph_view.py": {"streamlit"}, "explorer/pyvis_html.py": {"streamlit"},
    "explorer/charts.py": {"streamlit"}, "explorer/theme.py": {"streamlit"},
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
