"""Environments: the built-in `math` verifier, tool and game environments, and reward functions as environments.

    reinforge.environments.Math(require_boxed=True)   # a spec: built where the run's executor puts it
    reinforge.environments.Calculator(format="tagged") # multi-turn tool use (grpo.max_rollout_turns > 1)
    reinforge.environments.SlidingPuzzle()            # a multi-turn game
    reinforge.environments.Registered("exact_match")  # any registered environment, by name
    reinforge.environments.FunctionEnvironment(fn)    # fn(prompt, response, **metadata) -> float
    reinforge.environments.tools                      # tool-call parsing and tool messages
"""

from __future__ import annotations

from typing import Any

from reinforge.environments import tools
from reinforge.environments.function import FunctionEnvironment

__all__ = ["Calculator", "FunctionEnvironment", "Math", "Registered", "SlidingPuzzle", "tools"]


def Math(**options: Any) -> Any:  # noqa: N802 - reads as a constructor, returns a spec
    """The `math` environment (math-verify in worker processes); options: see MathEnvironmentConfig."""
    return Registered("math", **options)


def Calculator(**options: Any) -> Any:  # noqa: N802
    """The `calculator` environment (a safe calculator tool, math-verify on the answer); options: see CalculatorConfig."""
    return Registered("calculator", **options)


def SlidingPuzzle(**options: Any) -> Any:  # noqa: N802
    """The `sliding_puzzle` environment (one move per turn); options: see SlidingPuzzleConfig."""
    return Registered("sliding_puzzle", **options)


def Registered(name: str, **options: Any) -> Any:  # noqa: N802
    """Any registered environment by name, with its options (structured into its registered config class)."""
    from reinforge.core.run_config import EnvConfig
    from reinforge.core.specs import EnvironmentSpec
    from reinforge.core.specs import plugin_config

    return EnvironmentSpec(env=EnvConfig(name=name, env_cfg=plugin_config("environment", name, options)))
