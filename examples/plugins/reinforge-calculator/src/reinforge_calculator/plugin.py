"""The package's plugin module (its entry point): three registrations, nothing heavy imported."""

from __future__ import annotations

import reinforge as rf

_PKG = "reinforge_calculator"


@rf.hookimpl
def reinforge_register_algorithms(register):  # noqa: ANN001, ANN201 - the hook's documented signature
    register(
        "moving_baseline",
        f"{_PKG}.algorithm:MovingBaselineGRPO.from_run_config",
        run_config="grpo",  # takes GRPO's run config: its grpo: section, schedule included
        description="GRPO's rollouts and loss with a moving-average reward baseline kept across steps",
    )


@rf.hookimpl
def reinforge_register_environments(register):  # noqa: ANN001, ANN201
    register(
        "calc_tag",
        f"{_PKG}.environment:CalculatorEnvironment",
        config=f"{_PKG}.environment:CalculatorConfig",
        description="arithmetic with a calculator: <calc>2 + 3</calc> is answered once, then \\boxed{answer} is scored",
    )


@rf.hookimpl
def reinforge_register_generation_backends(register):  # noqa: ANN001, ANN201
    register(
        "calculator_stop",
        f"{_PKG}.generation:CalculatorStopGeneration",
        config=f"{_PKG}.generation:CalculatorStopOptions",
        requires=("torch", "transformers"),
        description="any registered generation backend, stopping each turn after a calculator call",
    )
