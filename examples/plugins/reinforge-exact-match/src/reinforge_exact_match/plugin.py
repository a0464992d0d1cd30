"""Registers the environment. Kept import-light: the implementation is named by its import path."""

from __future__ import annotations

import reinforge as rf


@rf.hookimpl
def reinforge_register_environments(register) -> None:
    register(
        "exact_match",
        "reinforge_exact_match.environment:ExactMatchEnvironment",
        config="reinforge_exact_match.environment:ExactMatchConfig",
        description="reward 1 when the final answer equals the gold answer exactly",
    )
