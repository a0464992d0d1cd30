"""The layering of the package, checked by reading every module's imports (top-level and inside functions).

Why: each rule keeps a change in one room from rippling through the others (see shared DESIGN.md):
`core/` is the seams and the loop and must stay importable without any plugin; algorithms talk only
to the seams, so they run unchanged on any backend and executor; the rollouts serve any algorithm;
backends are plugins that a third party could have written, so they reach nothing above the seams.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "reinforge"


def imported_modules(path: Path) -> set[str]:
    """Every `reinforge...` module `path` imports, as dotted names (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            # `from reinforge import trainer` imports a module of the top-level package too
            found.update(f"{module}.{alias.name}" for alias in node.names if module == "reinforge")
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module" and node.args:
            if isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                found.add(node.args[0].value)  # a lazy import is an import too
    return {name for name in found if name == "reinforge" or name.startswith("reinforge.")}


def room(module: str) -> str:
    """The first folder under reinforge/ (`core`, `algorithms`, ...), or `top` for reinforge itself and its modules."""
    parts = module.split(".")
    if len(parts) == 1:
        return "top"
    candidate = PACKAGE / parts[1]
    return parts[1] if candidate.is_dir() else "top"


def modules_of(folder: str) -> list[Path]:
    return sorted((PACKAGE / folder).rglob("*.py"))


def violations(folder: str, forbidden: set[str] | None = None, allowed: set[str] | None = None) -> list[str]:
    found = []
    for path in modules_of(folder):
        for module in sorted(imported_modules(path)):
            target = room(module)
            if (forbidden is not None and target in forbidden) or (allowed is not None and target not in allowed):
                found.append(f"{path.relative_to(PACKAGE.parent)} imports {module}")
    return found


def test_core_imports_only_core():
    assert violations("core", allowed={"core"}) == []


def test_algorithms_import_no_eval_data_executors_or_backends():
    assert violations("algorithms", forbidden={"eval", "data", "executors", "backends"}) == []


def test_rollouts_do_not_import_algorithms():
    assert violations("rollouts", forbidden={"algorithms"}) == []


def test_backends_import_no_algorithms_executors_or_the_package_top():
    assert violations("backends", forbidden={"algorithms", "executors", "top"}) == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import reinforge.data.loader\n", {"reinforge.data.loader"}),
        ("def f():\n    from reinforge.eval import runner\n", {"reinforge.eval"}),
        ("from reinforge import trainer\n", {"reinforge", "reinforge.trainer"}),
        ("from . import grpo_config\n", {"reinforge.algorithms"}),
        ("from ..core.batch import Batch\n", {"reinforge.core.batch"}),
        ("import torch\nfrom attrs import define\n", set()),
        ("import importlib\nimportlib.import_module('reinforge.executors.ray.executor')\n", {"reinforge.executors.ray.executor"}),
    ],
)
def test_the_import_reader_sees_every_form(tmp_path, source, expected):
    # A module placed as reinforge/algorithms/x.py (relative imports resolve against its package).
    path = PACKAGE / "algorithms" / "_probe_for_import_test.py"
    path.write_text(source, encoding="utf-8")
    try:
        assert imported_modules(path) == expected
    finally:
        path.unlink()


def test_a_forbidden_import_is_reported(tmp_path):
    path = PACKAGE / "algorithms" / "_probe_for_import_test.py"
    path.write_text("def late():\n    from reinforge.data.prompts import build_prompt_set\n", encoding="utf-8")
    try:
        assert violations("algorithms", forbidden={"data"}) == [
            "reinforge/algorithms/_probe_for_import_test.py imports reinforge.data.prompts"
        ]
    finally:
        path.unlink()


def test_room_names():
    assert room("reinforge.core.batch") == "core"
    assert room("reinforge.trainer") == "top"
    assert room("reinforge") == "top"
    assert room("reinforge.backends.generation.hf") == "backends"


def test_the_cli_does_not_depend_on_the_test_kit():
    # `reinforge model build --demo` builds the demo model from reinforge.models; the test kit reuses it, not the reverse.
    assert violations("cli", forbidden={"testing"}) == []
