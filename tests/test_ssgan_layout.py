"""The shape of the ssgan package: modules short enough to read in one sitting, no import cycle."""
import ast
from pathlib import Path

import ssgan

PACKAGE = Path(ssgan.__file__).parent
MAX_LINES = 360


def _imports(path: Path) -> set:
    """The ssgan modules a module imports (``from . import x``, ``from .x import y``, ``import ssgan.x``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ssgan."):
            found.add(node.module.split(".")[1])
    return found & {p.stem for p in PACKAGE.glob("*.py")}


def test_no_module_is_too_long():
    lengths = {p.name: len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert {k: n for k, n in lengths.items() if n > MAX_LINES} == {}


def test_no_import_cycle():
    graph = {p.stem: _imports(p) for p in PACKAGE.glob("*.py")}

    def visit(node, path):
        assert node not in path, " -> ".join(path + [node])
        for nxt in graph.get(node, ()):
            visit(nxt, path + [node])

    for module in graph:
        visit(module, [])
    assert "train" not in graph["evaluate"] and "checkpoint" in graph["train"]
