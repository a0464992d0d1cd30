"""DPO: -log σ(β (r_chosen − r_rejected)) against a frozen reference, on the same training backends.

Rows travel in pairs — chosen at even rows, rejected at the next odd row — and a pair never
splits across microbatches (policy.train_micro_batch_size counts rows, so it must be even).
`policy.train_global_batch_size` counts pairs.
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
import torch
from attrs import validators as v

from reinforge.algorithms.losses import DPOLoss, DPOLossConfig
from reinforge.core.batch import Batch
from reinforge.core.config import doc
from reinforge.core.errors import ReinforgeError
from reinforge.core.records import RecordFormat
from reinforge.core.run import RunParts
from reinforge.core.run_config import CheckpointingConfig, ClusterConfig, DataConfig, LoggerConfig, PolicyConfig, check_seed


@attrs.define(kw_only=True, frozen=True)
class DPOConfig:
    max_num_steps: int = doc("optimizer steps (each over policy.train_global_batch_size pairs)", default=150, validator=v.gt(0))
    val_period: int = doc("validation every N steps (0 = never)", default=10, validator=v.ge(0))
    val_at_start: bool = doc("validate before the first step", default=True)
    val_at_end: bool = doc("validate after the last step", default=True)
    seed: int = doc("seed for data order", default=42, validator=check_seed)


@attrs.define(kw_only=True, frozen=True)
class DPOPolicyConfig(PolicyConfig):
    """The policy of a DPO run: train_global_batch_size counts pairs, train_micro_batch_size rows (two per pair)."""

    def __attrs_post_init__(self) -> None:  # replaces PolicyConfig's check, which compares samples with samples
        rows = 2 * self.train_global_batch_size
        if self.train_micro_batch_size % 2:
            raise ValueError(
                f"train_micro_batch_size ({self.train_micro_batch_size}) counts rows and must be even for DPO, so "
                "that a chosen/rejected pair never splits across microbatches"
            )
        if rows % self.train_micro_batch_size:
            raise ValueError(
                f"train_global_batch_size ({self.train_global_batch_size} pairs = {rows} rows) must be a multiple of "
                f"train_micro_batch_size ({self.train_micro_batch_size} rows)"
            )


@attrs.define(kw_only=True, frozen=True)
class DPORunConfig:
    schedule_section: ClassVar[str] = "dpo"  # where the loop reads max_num_steps, val_period, ...

    algorithm: str = doc(
        "the registered algorithm this config is for: dpo, or one registered with run_config='dpo'", default="dpo"
    )
    dpo: DPOConfig = doc("DPO settings", factory=DPOConfig)
    loss_fn: DPOLossConfig = doc("the preference loss (β = reference_policy_kl_penalty)", factory=DPOLossConfig)
    policy: DPOPolicyConfig = doc("the trained policy (train_global_batch_size counts pairs, train_micro_batch_size rows)")
    data: DataConfig = doc("preference pairs: data.dataset names a reader of prompt/chosen/rejected records", factory=DataConfig)
    logger: LoggerConfig = doc("metrics", factory=LoggerConfig)
    checkpointing: CheckpointingConfig = doc("checkpoints", factory=CheckpointingConfig)
    cluster: ClusterConfig = doc("where workers run", factory=ClusterConfig)


class DPO:
    """Direct preference optimisation; `DPO(DPOLossConfig(reference_policy_kl_penalty=0.1))` from Python."""

    needs_generation = False

    async_rollouts_max_age = None  # no rollouts
    needs_environment = False
    needs_reference = True

    def __init__(self, loss: DPOLossConfig | None = None) -> None:
        self.loss_config = loss or DPOLossConfig()
        self.loss_fn = DPOLoss(self.loss_config)
        self.run: Any = None

    @classmethod
    def from_run_config(cls, config: DPORunConfig) -> DPO:
        """The algorithm plugin's constructor: a whole YAML run config."""
        return cls(config.loss_fn)

    def records_per_step(self, policy: PolicyConfig) -> int:
        return policy.train_global_batch_size

    record_format = RecordFormat(kind="preference_pairs")  # encoded (chosen, rejected) pairs (reinforge.data)

    def setup(self, run: RunParts) -> None:
        if run.policy_config.train_micro_batch_size % 2:
            raise ReinforgeError(
                f"policy.train_micro_batch_size ({run.policy_config.train_micro_batch_size}) counts rows and must be "
                "even for DPO, so that a chosen/rejected pair never splits across microbatches"
            )
        self.run = run

    def _batch(self, pairs: list[dict[str, Any]]) -> Batch:
        rows = [side for pair in pairs for side in (pair["chosen"], pair["rejected"])]  # chosen even, rejected odd
        batch = Batch.from_sequences([ids for ids, _ in rows], pad_id=self.run.tokenizer.pad_token_id)
        mask = torch.zeros_like(batch["input_ids"], dtype=torch.float32)
        for i, (_, row_mask) in enumerate(rows):
            mask[i, : len(row_mask)] = torch.tensor(row_mask)
        batch["token_mask"] = mask
        batch["sample_mask"] = torch.ones(len(rows))
        batch["reference_logprobs"] = self.run.policy.reference_logprobs(batch)
        return batch

    def train_step(self, step: int, pairs: list[dict[str, Any]]) -> dict[str, float]:
        with self.run.timer.phase("logprobs"):
            batch = self._batch(pairs)
        with self.run.timer.phase("training"):
            metrics = self.run.policy.train(batch, self.loss_fn)
        return {f"train/{k}": v for k, v in metrics.items()}

    def validate(self, step: int) -> dict[str, float]:
        pairs = self.run.val_prompts
        if not pairs:
            return {}
        sums: dict[str, float] = {}
        size = max(1, self.run.policy_config.logprob_batch_size // 2)
        with self.run.timer.phase("validation"):
            for start in range(0, len(pairs), size):
                batch = self._batch(pairs[start : start + size])
                logprobs = self.run.policy.logprobs(batch)
                n_pairs = torch.tensor(float(len(pairs)) * 2)  # global: every validation pair
                _, metrics = self.loss_fn(logprobs, batch, batch.valid_token_count(), n_pairs)
                for key, value in metrics.items():
                    sums[key] = sums.get(key, 0.0) + float(value)
        return {f"val/{k}": v for k, v in sums.items() if not k.endswith(("_min", "_max"))}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass
