"""A griffe extension for the API reference (loaded by mkdocs.yml; not part of the package).

Two things the static reader cannot see on its own:

- `reinforge` exports its public names lazily, through the `_EXPORTS` table in
  `reinforge/__init__.py` and a module `__getattr__`. Each entry becomes an alias member of the
  package here, so the reference names objects the way users write them (`reinforge.Trainer`,
  `reinforge.GRPOConfig`) and follows the table when modules move.
- Config classes document their fields with `doc("text", default=...)` (the text
  `reinforge plugins show` prints). That text becomes the field's docstring, and the field's shown
  value becomes its default.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import griffe


def _exports(path: Path) -> dict[str, str]:
    """The `_EXPORTS` table of `reinforge/__init__.py`, read without importing the package."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body:
        target = node.target if isinstance(node, ast.AnnAssign) else (node.targets[0] if isinstance(node, ast.Assign) else None)
        if isinstance(target, ast.Name) and target.id == "_EXPORTS" and node.value is not None:
            return ast.literal_eval(node.value)
    return {}


class ReinforgeDocs(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        if pkg.name != "reinforge" or pkg.filepath is None:
            return
        for name, spec in _exports(Path(str(pkg.filepath))).items():
            module, _, attribute = spec.partition(":")
            if attribute and name not in pkg.members:
                pkg.set_member(name, griffe.Alias(name, f"{module}.{attribute}", parent=pkg))

    on_package_loaded = on_package  # the hook's name before griffe 2

    def on_attribute_instance(self, *, node: Any, attr: griffe.Attribute, **kwargs: Any) -> None:
        call = getattr(node, "value", None)
        if not isinstance(call, ast.Call) or not call.args:
            return
        func = call.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
        first = call.args[0]
        if name != "doc" or not isinstance(first, ast.Constant) or not isinstance(first.value, str):
            return
        attr.docstring = griffe.Docstring(first.value, parent=attr)
        for keyword in call.keywords:
            if keyword.arg == "default":
                attr.value = ast.unparse(keyword.value)
            elif keyword.arg == "factory":
                attr.value = f"{ast.unparse(keyword.value)}()"
        if not any(k.arg in ("default", "factory") for k in call.keywords):
            attr.value = None
