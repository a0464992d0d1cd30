"""reinforge: plugin-based reinforcement-learning post-training of language models.

    import reinforge as rf

    trainer = rf.Trainer(
        algorithm=rf.GRPO(rf.GRPOConfig(num_generations_per_prompt=8)),
        policy=rf.backends.DTensorTraining("model/", lr=5e-5),
        generation=rf.backends.HFGeneration(max_new_tokens=64),
        environment=reward_fn,                      # (prompt, response, **metadata) -> float
        train_data=records,                         # list of dicts or a datasets.Dataset
        loop=rf.LoopConfig(max_steps=20),
    )
    trainer.fit()

Names are imported on first use, so `import reinforge` stays light (no torch, no engines).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> "module:attribute" (attribute omitted: the module itself)
_EXPORTS: dict[str, str] = {
    "Trainer": "reinforge.trainer:Trainer",
    "LoopConfig": "reinforge.core.loop:LoopConfig",
    "load_config": "reinforge.core.load:load_config",
    "hookimpl": "reinforge.core.hookspecs:hookimpl",
    "Registry": "reinforge.core.registry:Registry",
    "ReinforgeError": "reinforge.core.errors:ReinforgeError",
    # algorithms and their settings
    "GRPO": "reinforge.algorithms.grpo:GRPO",
    "GRPOConfig": "reinforge.algorithms.grpo_config:GRPOConfig",
    "AsyncGRPOConfig": "reinforge.algorithms.grpo_config:AsyncGRPOConfig",
    "ClippedPGLossConfig": "reinforge.algorithms.losses_pg:ClippedPGLossConfig",
    "SFT": "reinforge.algorithms.sft:SFT",
    "SFTConfig": "reinforge.algorithms.sft_config:SFTConfig",
    "DPO": "reinforge.algorithms.dpo:DPO",
    "DPOLossConfig": "reinforge.algorithms.losses_preference:DPOLossConfig",
    # shared settings
    "DataConfig": "reinforge.core.run_config:DataConfig",
    "LoggerConfig": "reinforge.core.run_config:LoggerConfig",
    "ClusterConfig": "reinforge.core.run_config:ClusterConfig",
    "OptimizerConfig": "reinforge.core.run_config:OptimizerConfig",
    "SchedulerConfig": "reinforge.core.run_config:SchedulerConfig",
    "LoRAConfig": "reinforge.core.lora_config:LoRAConfig",
    # the seams, for plugin authors
    "Algorithm": "reinforge.core.interfaces:Algorithm",
    "Environment": "reinforge.core.interfaces:Environment",
    "EnvironmentStep": "reinforge.core.interfaces:EnvironmentStep",
    "GenerationBackend": "reinforge.core.interfaces:GenerationBackend",
    "TrainingBackend": "reinforge.core.interfaces:TrainingBackend",
    "LossFn": "reinforge.core.interfaces:LossFn",
    "AdvantageEstimator": "reinforge.core.constructors:AdvantageEstimator",
    "Logger": "reinforge.core.interfaces:Logger",
    "Batch": "reinforge.core.batch:Batch",
    "SamplingParams": "reinforge.core.sampling:SamplingParams",
    "RunParts": "reinforge.core.run:RunParts",
    # sub-packages
    "backends": "reinforge.backends",
    "environments": "reinforge.environments",
    "data": "reinforge.data",
    "rollouts": "reinforge.rollouts",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'reinforge' has no attribute {name!r}")
    module_name, _, attribute = target.partition(":")
    module = importlib.import_module(module_name)
    value = getattr(module, attribute) if attribute else module
    globals()[name] = value  # import once
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
