"""Built-in algorithms: each registers its class and the run-config class of a whole run."""

from __future__ import annotations

from reinforge.core.hookspecs import hookimpl
from reinforge.core.registry import Register


@hookimpl
def reinforge_register_algorithms(register: Register) -> None:
    register(
        "grpo",
        "reinforge.algorithms.grpo:GRPO.from_run_config",
        config="reinforge.algorithms.grpo_config:GRPORunConfig",
        description="Group Relative Policy Optimization with the DAPO options (clip-higher, dynamic sampling, overlong shaping)",
    )
    register(
        "sft",
        "reinforge.algorithms.sft:SFT.from_run_config",
        config="reinforge.algorithms.sft_config:SFTRunConfig",
        description="supervised fine-tuning: NLL over assistant tokens, normalised by the global token count",
    )
    register(
        "dpo",
        "reinforge.algorithms.dpo:DPO.from_run_config",
        config="reinforge.algorithms.dpo:DPORunConfig",
        description="direct preference optimisation against a frozen reference, optional SFT term",
    )
