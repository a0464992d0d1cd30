"""Rollouts: generate responses for tokenized prompts and let the environment judge them.

Single-turn environments finish after one generation. Multi-turn ones return an observation
(a message) per unfinished conversation; its tokens are appended — by the chat template, so the
model sees what it would see in deployment — and generation continues, up to `max_turns`.
Only generated tokens count for the loss (`token_mask`); rewards of all turns are summed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import attrs
import torch

from reinforge.core.batch import Batch
from reinforge.core.interfaces import Environment, GenerationBackend
from reinforge.core.sampling import SamplingParams
from reinforge.core.timer import Timer


@dataclass
class _Row:
    """One conversation being rolled out (plain lists: rows grow by different amounts per turn)."""

    ids: list[int]
    prompt_length: int
    messages: list[dict[str, str]]  # the prompt's messages (system, worked examples, user), then the conversation's
    metadata: dict[str, Any]
    gen_mask: list[float] = field(default_factory=list)
    gen_logprobs: list[float] = field(default_factory=list)
    reward: float = 0.0
    done: bool = False
    truncated: bool = False
    turns: int = 0
    info: dict[str, Any] = field(default_factory=dict)
    correct: bool | None = None  # as the environment last judged it; None = it did not say
    prompt_messages: int = 0  # how many of `messages` came with the prompt (worked examples included)


@attrs.define
class RolloutResult:
    """Rollouts as a training batch plus what was said, for metrics and sample logs."""

    batch: Batch  # input_ids, input_lengths, prompt_lengths, token_mask, generation_logprobs, truncated
    rewards: torch.Tensor  # [N]
    responses: list[str]  # the assistant text of every conversation
    env_metrics: dict[str, float]
    turns: list[int]
    info: list[dict[str, Any]]  # per conversation, from the environment (e.g. the extracted answer)
    # [N] bool: the environment's verdict (EnvironmentStep.correct), else reward >= 1
    correct: torch.Tensor = attrs.field(default=None)

    def __attrs_post_init__(self) -> None:
        if self.correct is None:
            self.correct = self.rewards >= 1.0


def run_rollouts(
    prompts: list[dict[str, Any]],
    *,
    generation: GenerationBackend,
    environment: Environment,
    tokenizer: Any,
    sampling: SamplingParams,
    max_total_length: int,
    max_turns: int = 1,
    timer: Timer | None = None,
) -> RolloutResult:
    """Roll out every prompt once (repeat prompts beforehand for G samples per prompt).

    With a `timer`, generation and environment time are recorded as the phases "generation" and "reward".
    """
    timer = timer or Timer()
    rows = [
        _Row(ids=list(p["input_ids"]), prompt_length=len(p["input_ids"]), messages=list(p["messages"]), metadata=p["metadata"],
             prompt_messages=len(p["messages"]))
        for p in prompts
    ]
    env_metric_sums: dict[str, float] = {}
    for turn in range(max_turns):
        active = [i for i, row in enumerate(rows) if not row.done]
        if not active:
            break
        longest = max(len(rows[i].ids) for i in active)
        budget = min(sampling.max_new_tokens, max_total_length - longest)
        if budget < 1:  # no room left to generate: these conversations end here
            for i in active:
                rows[i].done = rows[i].truncated = True
            break
        with timer.phase("generation"):
            _generate_turn(rows, active, generation, tokenizer, attrs.evolve(sampling, max_new_tokens=budget, n=1))
        with timer.phase("reward"):
            result = environment.step([rows[i].messages for i in active], [rows[i].metadata for i in active])
        for key, value in result.metrics.items():
            env_metric_sums[key] = env_metric_sums.get(key, 0.0) + value * len(active)
        for j, i in enumerate(active):
            row = rows[i]
            row.reward += float(result.rewards[j])
            row.turns = turn + 1
            if j < len(result.info):
                row.info.update(result.info[j])
            if result.correct is not None:
                row.correct = bool(result.correct[j])
            observation = result.observations[j]
            if result.done[j] or observation is None or turn == max_turns - 1:
                row.done = True
                continue
            _append_observation(row, dict(observation), tokenizer, max_total_length)
    env_metrics = {k: v / len(rows) for k, v in env_metric_sums.items()}
    return _to_result(rows, tokenizer, env_metrics)


def _generate_turn(
    rows: list[_Row], active: list[int], generation: GenerationBackend, tokenizer: Any, sampling: SamplingParams
) -> None:
    batch = Batch.from_sequences([rows[i].ids for i in active], pad_id=_pad_id(tokenizer))
    out = generation.generate(batch, sampling)
    output_ids = out["output_ids"]  # [A, T]
    logprobs = out["generation_logprobs"]  # [A, T]
    for j, i in enumerate(active):
        row = rows[i]
        start, stop = int(out["prompt_lengths"][j]), int(out["sequence_lengths"][j])
        response = output_ids[j, start:stop].tolist()
        row.ids.extend(response)
        row.gen_mask.extend([0.0] * (start - len(row.gen_mask) - row.prompt_length))
        row.gen_mask.extend([1.0] * len(response))
        row.gen_logprobs.extend([0.0] * (start - len(row.gen_logprobs) - row.prompt_length))
        row.gen_logprobs.extend(logprobs[j, start:stop].tolist())
        row.truncated = bool(out["truncated"][j])
        text = tokenizer.decode(response, skip_special_tokens=True)
        row.messages.append({"role": "assistant", "content": text})


def _append_observation(row: _Row, observation: dict[str, str], tokenizer: Any, max_total_length: int) -> None:
    """Append the observation's tokens as the chat template renders them after this conversation."""
    before = tokenizer.apply_chat_template(row.messages, tokenize=False)
    after = tokenizer.apply_chat_template([*row.messages, observation], tokenize=False, add_generation_prompt=True)
    suffix = after[len(before) :] if after.startswith(before) else after
    new_ids = tokenizer(suffix, add_special_tokens=False)["input_ids"]
    row.messages.append(observation)
    if len(row.ids) + len(new_ids) >= max_total_length:
        row.done = row.truncated = True
        return
    row.ids.extend(new_ids)


def _to_result(rows: list[_Row], tokenizer: Any, env_metrics: dict[str, float]) -> RolloutResult:
    batch = Batch.from_sequences([row.ids for row in rows], pad_id=_pad_id(tokenizer))
    width = batch["input_ids"].shape[1]
    token_mask = torch.zeros(len(rows), width)
    gen_logprobs = torch.zeros(len(rows), width)
    for i, row in enumerate(rows):
        span = slice(row.prompt_length, row.prompt_length + len(row.gen_mask))
        token_mask[i, span] = torch.tensor(row.gen_mask)
        gen_logprobs[i, span] = torch.tensor(row.gen_logprobs)
    batch["prompt_lengths"] = torch.tensor([row.prompt_length for row in rows])
    batch["token_mask"] = token_mask
    batch["generation_logprobs"] = gen_logprobs
    batch["truncated"] = torch.tensor([row.truncated for row in rows])
    # A prompt truncated to fit (data.on_overlong_prompt: truncate) is rolled out but never trained on.
    batch["sample_mask"] = torch.tensor([0.0 if row.metadata.get("prompt_truncated") else 1.0 for row in rows])
    batch["messages"] = [row.messages for row in rows]
    batch["metadata"] = [row.metadata for row in rows]
    responses = ["".join(m["content"] for m in row.messages[_first_response(row) :] if m["role"] == "assistant") for row in rows]
    return RolloutResult(
        batch=batch,
        rewards=torch.tensor([row.reward for row in rows], dtype=torch.float32),
        responses=responses,
        env_metrics=env_metrics,
        turns=[row.turns for row in rows],
        info=[row.info for row in rows],
        correct=torch.tensor([row.reward >= 1.0 if row.correct is None else row.correct for row in rows], dtype=torch.bool),
    )


def _first_response(row: _Row) -> int:
    """Where the rollout's own messages start: after the prompt's (whose assistant turns are worked examples)."""
    return row.prompt_messages


def _pad_id(tokenizer: Any) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
