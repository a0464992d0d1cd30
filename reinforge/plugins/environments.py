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
    register(
        "calculator",
        "reinforge.environments.calculator:CalculatorEnvironment",
        config="reinforge.environments.calculator:CalculatorConfig",
        requires=("math_verify",),
        extra="math",
        description="multi-turn tool use: calculator calls answered by a safe evaluator, the final \\boxed{} answer scored by math-verify",
    )
    register(
        "sliding_puzzle",
        "reinforge.environments.sliding_puzzle:SlidingPuzzleEnvironment",
        config="reinforge.environments.sliding_puzzle:SlidingPuzzleConfig",
        description="multi-turn game: a 3x3 sliding-tile puzzle, one move per turn, rewarded when solved",
    )
