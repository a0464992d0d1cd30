"""The SFT run config: the `sft:` section plus the shared ones (no generation, no environment)."""

from __future__ import annotations

from typing import ClassVar

import attrs
from attrs import validators as v

from reinforge.core.config import doc
from reinforge.core.run_config import CheckpointingConfig, ClusterConfig, DataConfig, LoggerConfig, PolicyConfig, check_seed


@attrs.define(kw_only=True, frozen=True)
class SFTConfig:
    max_num_steps: int = doc("optimizer steps (each over policy.train_global_batch_size conversations)", default=100, validator=v.gt(0))
    val_period: int = doc("validation loss every N steps (0 = never)", default=10, validator=v.ge(0))
    val_at_start: bool = doc("validation loss before the first step", default=True)
    val_at_end: bool = doc("validation loss after the last step", default=True)
    only_unmask_final: bool = doc("train on the final assistant turn only (else on every assistant turn)", default=False)
    seed: int = doc("seed for data order and initialisation", default=42, validator=check_seed)


@attrs.define(kw_only=True, frozen=True)
class SFTRunConfig:
    schedule_section: ClassVar[str] = "sft"  # where the loop reads max_num_steps, val_period, ...

    algorithm: str = doc(
        "the registered algorithm this config is for: sft, or one registered with run_config='sft'", default="sft"
    )
    sft: SFTConfig = doc("SFT settings", factory=SFTConfig)
    policy: PolicyConfig = doc("the trained policy")
    data: DataConfig = doc("conversations: data.dataset names a reader of SFT records", factory=DataConfig)
    logger: LoggerConfig = doc("metrics", factory=LoggerConfig)
    checkpointing: CheckpointingConfig = doc("checkpoints", factory=CheckpointingConfig)
    cluster: ClusterConfig = doc("where workers run", factory=ClusterConfig)
