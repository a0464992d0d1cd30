"""core/ is the bottom of the house: it imports no plugin folder, no executor, no composition code."""

from __future__ import annotations

import ast
from pathlib import Path

import reinforge

CORE = Path(reinforge.__file__).parent / "core"
FORBIDDEN = ("data", "loggers", "backends", "algorithms", "environments", "plugins", "executors", "rollouts",
             "eval", "cli", "testing", "compose", "trainer", "specs")


def imported_modules(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module" and node.args:
            if isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                names.append(node.args[0].value)  # a lazy import is an import too
    return names


def test_core_imports_nothing_above_it():
    offending = [
        f"{path.name}: {name}"
        for path in sorted(CORE.glob("*.py"))
        for name in imported_modules(path)
        if name.startswith("reinforge.") and name.split(".")[1] in FORBIDDEN
    ]
    assert offending == []


def test_the_check_sees_lazy_and_plain_imports(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import importlib\nfrom reinforge.data import x\nimportlib.import_module('reinforge.loggers')\n")
    assert imported_modules(sample) == ["importlib", "reinforge.data", "reinforge.loggers"]
