"""SFT: token-level negative log-likelihood over assistant tokens, normalised by the global token count.

The chat template's own `{% generation %}` markers say which tokens the assistant wrote
(`return_assistant_tokens_mask`), so system and user tokens never count, whatever the template.
Templates without them (SmolLM2's, for one) are read by prefixes instead: an
assistant message's tokens are those the template adds between the conversation up to it (with the
generation prompt) and the conversation through it, less the whitespace it puts after the message.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from reinforge.algorithms.losses import NLLLoss
from reinforge.algorithms.sft_config import SFTConfig, SFTRunConfig
from reinforge.core.batch import Batch
from reinforge.core.errors import ReinforgeError
from reinforge.core.run import RunParts
from reinforge.core.run_config import DataConfig, PolicyConfig


def to_messages(record: dict[str, Any]) -> list[dict[str, str]]:
    """A record as chat messages: `messages` as given, else `problem`/`answer` style input and output."""
    if "messages" in record:
        return list(record["messages"])
    for prompt_key, response_key in (("problem", "solution"), ("input", "output"), ("problem", "generated_solution"), ("problem", "answer")):
        if prompt_key in record and response_key in record:
            return [{"role": "user", "content": str(record[prompt_key])}, {"role": "assistant", "content": str(record[response_key])}]
    raise ReinforgeError(
        f"an SFT record needs `messages`, or a prompt and a response (problem/solution, input/output, "
        f"problem/generated_solution); this one has {sorted(record)}"
    )


_GENERATION_BLOCK = re.compile(r"\{%-?\s*generation\s*-?%\}")  # a template's `{% generation %}` marker


def encode_conversation(tokenizer: Any, messages: list[dict[str, str]], *, only_final: bool) -> tuple[list[int], list[float]]:
    """(input_ids, loss mask): 1 on the assistant's tokens (only the last turn's with `only_final`)."""
    if not any(m.get("role") == "assistant" for m in messages):
        raise ReinforgeError(f"an SFT/DPO conversation has no assistant message to train on (roles: {[m.get('role') for m in messages]})")
    if _GENERATION_BLOCK.search(getattr(tokenizer, "chat_template", None) or ""):
        encoded = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
        ids, mask = list(encoded["input_ids"]), [float(m) for m in encoded["assistant_masks"]]
    else:
        ids, mask = _assistant_mask_by_prefixes(tokenizer, messages)
    if not any(mask):
        raise ReinforgeError(
            "the chat template marks no assistant tokens: its {% generation %} blocks are empty or the assistant "
            "messages are empty; check the tokenizer's chat_template"
        )
    if only_final:
        last_start = max(i for i in range(len(mask)) if mask[i] and (i == 0 or not mask[i - 1]))
        mask = [m if i >= last_start else 0.0 for i, m in enumerate(mask)]
    return ids, mask


def _assistant_mask_by_prefixes(tokenizer: Any, messages: list[dict[str, str]]) -> tuple[list[int], list[float]]:
    """(input_ids, mask) for a template without `{% generation %}` markers; see the module docstring."""

    def encode(part: list[dict[str, str]], prompt: bool) -> list[int]:
        if not part:
            return []
        return list(tokenizer.apply_chat_template(part, tokenize=True, return_dict=True, add_generation_prompt=prompt)["input_ids"])

    ids = encode(messages, False)
    mask = [0.0] * len(ids)
    for k, message in enumerate(messages):
        if message.get("role") != "assistant":
            continue
        start, through = encode(messages[:k], True), encode(messages[: k + 1], False)
        if ids[: len(start)] != start or ids[: len(through)] != through or len(through) < len(start):
            raise ReinforgeError(
                f"the chat template has no {{% generation %}} blocks, and the conversation's tokens are not built by "
                f"appending messages (the tokens up to assistant message {k} are not a prefix of the whole), so which "
                "tokens the assistant wrote cannot be told apart; use a tokenizer whose chat_template marks them with "
                "{% generation %} ... {% endgeneration %}"
            )
        stop = len(through)
        while stop > len(start) and not tokenizer.decode(ids[stop - 1 : stop]).strip():
            stop -= 1  # the newline the template writes after a message is not the assistant's
        mask[len(start) : stop] = [1.0] * (stop - len(start))
    return ids, mask


class SFT:
    """Supervised fine-tuning; `SFT(SFTConfig(only_unmask_final=True))` from Python."""

    needs_generation = False
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

    def prepare_data(
        self, records: list[dict[str, Any]], tokenizer: Any, *, data: DataConfig, policy: PolicyConfig, source: str
    ) -> tuple[list[dict[str, Any]], dict[str, int]]:
        """Conversations -> token ids and the assistant-token mask; longer than the sequence limit: dropped."""
        limit = policy.max_total_sequence_length
        items, dropped = [], 0
        for record in records:
            ids, mask = encode_conversation(tokenizer, to_messages(record), only_final=self.config.only_unmask_final)
            if len(ids) > limit:
                dropped += 1
                continue
            items.append({"input_ids": ids, "mask": mask})
        return items, {"records": len(records), "dropped_overlong": dropped}

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
