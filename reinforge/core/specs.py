"""What to build for each part of a run: the plugin's name and its own small config.

A spec is plain data, so the executor can build the part where it runs (in this process, or
inside a Ray worker) and `import reinforge` stays light. The user-facing constructors
(`reinforge.backends.HFGeneration(...)`, `reinforge.environments.Math(...)`, ...) return specs;
`Trainer.from_config` builds the same specs from YAML sections. A spec may instead carry an
`instance` that is already built (a local object used as it is).
"""

from __future__ import annotations

from typing import Any

import attrs

from reinforge.core.interfaces import Environment, GenerationBackend, TrainingBackend
from reinforge.core.run_config import EnvConfig, GenerationConfig, PolicyConfig


@attrs.define(kw_only=True, frozen=True)
class TrainingSpec:
    """The trained policy: model, batch sizes, optimizer, and the training backend (`policy.backend`) with its options."""

    policy: PolicyConfig
    instance: TrainingBackend | None = None  # already built: used instead of building `policy.backend`


@attrs.define(kw_only=True, frozen=True)
class GenerationSpec:
    """The rollout generator: backend name and options, and the sampling settings; it generates with the policy's model."""

    generation: GenerationConfig
    instance: GenerationBackend | None = None


@attrs.define(kw_only=True, frozen=True)
class EnvironmentSpec:
    """The reward environment: plugin name and options."""

    env: EnvConfig
    instance: Environment | None = None


@attrs.define(kw_only=True, frozen=True)
class DatasetSpec:
    """Records read by a registered dataset reader (`arithmetic`, `jsonl`, ...) with its options."""

    name: str
    options: Any = None
