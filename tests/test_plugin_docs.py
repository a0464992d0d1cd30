"""What a plugin author copies from must use the public API: the README's and "Writing a plugin"'s code, and the
example plugin packages, import `reinforge` and nothing under it; the README's Python snippet trains at the CPU
recipe's learning rate (1e-4 collapsed the demo)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
PACKAGES = REPO / "examples" / "plugins"


def python_blocks(markdown: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown.read_text(), flags=re.DOTALL)


def internal_imports(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
        found += [n for n in names if n.startswith("reinforge.") and not n.startswith("reinforge.testing")]
    return found


def test_the_plugin_docs_import_only_the_public_api():
    for page in (REPO / "README.md", REPO / "docs" / "plugins.md"):
        for block in python_blocks(page):
            if block.startswith("--8<--"):
                continue  # an included file: checked below
            assert not internal_imports(block), f"{page.name}: {internal_imports(block)} in\n{block}"


def test_the_example_plugin_packages_import_only_the_public_api():
    files = sorted(PACKAGES.rglob("*.py"))
    assert {p.parts[len(PACKAGES.parts)] for p in files} >= {"reinforge-exact-match", "reinforge-calculator"}
    for path in files:
        assert not internal_imports(path.read_text()), f"{path.relative_to(REPO)} imports {internal_imports(path.read_text())}"


def test_the_readme_snippet_trains_at_the_cpu_recipes_learning_rate():
    snippet = python_blocks(REPO / "README.md")[0]
    recipe = yaml.safe_load((REPO / "examples" / "configs" / "grpo-arith-cpu.yaml").read_text())
    [lr] = re.findall(r"\blr=([0-9.e-]+)", snippet)
    assert float(lr) == recipe["policy"]["optimizer"]["lr"]
