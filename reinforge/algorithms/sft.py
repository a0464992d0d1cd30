"""SFT: token-level negative log-likelihood over assistant tokens, normalised by the global token count.

The chat template's own `{% generation %}` markers say which tokens the assistant wrote
(`return_assistant_tokens_mask`), so system and user tokens never count, whatever the template.
Templates without them (SmolLM2's, for one) are read by prefixes instead: an
assistant message's tokens are those the template adds between the conversation up to it (with the
generation prompt) and the conversation through it, less the whitespace it puts after the message.
"""

from __future__ import annotations

from typing import Any

import torch

from reinforge.algorithms.losses import NLLLoss
from reinforge.algorithms.sft_config import SFTConfig, SFTRunConfig
from reinforge.core.batch import Batch
from reinforge.core.records import RecordFormat
from reinforge.core.run import RunParts
from reinforge.core.run_config import PolicyConfig


class SFT:
    """Supervised fine-tuning; `SFT(SFTConfig(only_unmask_final=True))` from Python."""

    needs_generation = False

    async_rollouts_max_age = None  # no rollouts
    needs_environment = False
    needs_reference = False

    def __init__(self, config: SFTConfig | None = None) -> None:
        self.config = config or SFTConfig()
        self.loss_fn = NLLLoss()
        self.run: Any = None

    validation_metrics = ("val/loss",)  # what `validate` returns (checkpointing.metric_name must be one of them)

    @classmethod
    def from_run_config(cls, config: SFTRunConfig) -> SFT:
        """The algorithm plugin's constructor: a whole YAML run config."""
        return cls(config.sft)

    def records_per_step(self, policy: PolicyConfig) -> int:
        return policy.train_global_batch_size

    @property
    def record_format(self) -> RecordFormat:
        """Conversations, encoded with the assistant-token mask (only the last turn's with `sft.only_unmask_final`)."""
        return RecordFormat(kind="conversations", only_final_assistant_turn=self.config.only_unmask_final)

    def setup(self, run: RunParts) -> None:
        self.run = run

    def _batch(self, items: list[dict[str, Any]]) -> Batch:
        pad = self.run.tokenizer.pad_token_id
        batch = Batch.from_sequences([item["input_ids"] for item in items], pad_id=pad)
        mask = torch.zeros_like(batch["input_ids"], dtype=torch.float32)
        for i, item in enumerate(items):
            mask[i, : len(item["mask"])] = torch.tensor(item["mask"])
        batch["token_mask"] = mask
        batch["sample_mask"] = torch.ones(len(items))
        return batch

    def train_step(self, step: int, items: list[dict[str, Any]]) -> dict[str, float]:
        with self.run.timer.phase("training"):
            metrics = self.run.policy.train(self._batch(items), self.loss_fn)
        return {f"train/{k}": v for k, v in metrics.items()}

    def validate(self, step: int) -> dict[str, float]:
        items = self.run.val_prompts
        if not items:
            return {}
        total, tokens = 0.0, 0.0
        size = self.run.policy_config.logprob_batch_size
        with self.run.timer.phase("validation"):
            for start in range(0, len(items), size):
                batch = self._batch(items[start : start + size])
                logprobs = self.run.policy.logprobs(batch)  # [B, T]
                total += float(-(logprobs * batch["token_mask"]).sum())
                tokens += float(batch["token_mask"].sum())
        return {"val/loss": total / max(tokens, 1.0)}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass
