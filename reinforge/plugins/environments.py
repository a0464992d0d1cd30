"""Built-in environments."""

from __future__ import annotations

from reinforge.core.hookspecs import hookimpl
from reinforge.core.registry import Register


@hookimpl
def reinforge_register_environments(register: Register) -> None:
    register(
        "math",
        "reinforge.environments.math:MathEnvironment",
        config="reinforge.environments.math:MathEnvironmentConfig",
        requires=("math_verify",),
        extra="math",
        description="verifiable math reward: 1 if math-verify finds the answer equal to the gold answer, else 0",
    )
