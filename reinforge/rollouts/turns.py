"""Rollouts: generate responses for tokenized prompts and let the environment judge them, turn by turn.

Single-turn environments finish after one generation. Multi-turn ones return an observation
(a message) per unfinished conversation, and generation continues, up to `max_turns`.

The token invariant: a row's ids are its prompt ids, then for each turn the ids the generator
returned, then the bridge the chat template puts between that assistant turn and the next
generation (`reinforge.rollouts.bridge`). No generated token is ever decoded and re-encoded,
and the history is never re-rendered, so the trainer scores exactly what the model sampled and
saw. Only generated tokens count for the loss (`token_mask`); bridges have mask 0 and logprob 0.

How an episode ends, per row:
- the environment says `done` (or gives no observation);
- `max_turns` turns ran without `done`: `max_turns_reached`;
- the context (`max_total_length`) has no room for the bridge and one more token: `truncated`;
- the environment failed on the conversation (the guard scored it 0): its reward is 0.
`truncated` means a length limit ended the episode: the context ran out, or the episode's last
turn hit `max_new_tokens` without a stop. A turn cut at `max_new_tokens` does not end the episode
by itself: the environment sees the cut reply and decides, and the bridge supplies the closing
tokens the model did not write. Reaching `max_turns` is not truncation (`max_turns_reached`).

Each turn, rows are generated in groups with one sampling setting each: the same stop strings
(the environment's `next_stop_strings`, else the run's) and the same token budget (the smaller
of `max_new_tokens` and the row's own room left), so one long conversation never shortens the
others' turns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import attrs
import torch

from reinforge.core.batch import Batch
from reinforge.core.env_guard import GUARD_ERROR
from reinforge.core.interfaces import Environment, EnvironmentStep, GenerationBackend
from reinforge.core.sampling import SamplingParams
from reinforge.core.timer import Timer
from reinforge.rollouts.bridge import TurnBridge


@dataclass
class _Row:
    """One conversation being rolled out (plain lists: rows grow by different amounts per turn)."""

    ids: list[int]
    prompt_length: int
    messages: list[dict[str, str]]  # the prompt's messages (system, worked examples, user), then the conversation's
    metadata: dict[str, Any]
    prompt_messages: int = 0  # how many of `messages` came with the prompt (worked examples included)
    # aligned with ids[prompt_length:]: 1 / the sampled logprob on generated tokens, 0 on bridges
    gen_mask: list[float] = field(default_factory=list)
    gen_logprobs: list[float] = field(default_factory=list)
    reward: float = 0.0  # summed over turns
    last_reward: float = 0.0  # the last turn's
    components: dict[str, float] = field(default_factory=dict)  # summed over turns
    done: bool = False
    truncated: bool = False  # a length limit ended the episode (see the module docstring)
    turn_truncated: bool = False  # the latest turn hit max_new_tokens without a stop
    turn_tokens: int = 0  # tokens the latest turn generated
    max_turns_reached: bool = False
    turns: int = 0
    info: dict[str, Any] = field(default_factory=dict)
    correct: bool | None = None  # as the environment last judged it; None = it did not say
    stop_strings: tuple[str, ...] | None = None  # for the next turn; None = the run's


@attrs.define
class RolloutResult:
    """Rollouts as a training batch plus what was said, for metrics and sample logs."""

    batch: Batch  # input_ids, input_lengths, prompt_lengths, token_mask, generation_logprobs, truncated
    rewards: torch.Tensor  # [N] summed over turns
    responses: list[str]  # the assistant text of every conversation
    env_metrics: dict[str, float]
    turns: list[int]
    info: list[dict[str, Any]]  # per conversation, from the environment (e.g. the extracted answer)
    # [N] bool: the environment's verdict (EnvironmentStep.correct), else reward >= 1
    correct: torch.Tensor = attrs.field(default=None)
    last_rewards: torch.Tensor = attrs.field(default=None)  # [N] the last turn's reward (grpo.multi_turn_reward: last)
    max_turns_reached: torch.Tensor = attrs.field(default=None)  # [N] bool: max_turns ran out before `done`
    reward_components: list[dict[str, float]] = attrs.field(factory=list)  # per conversation, summed over turns
    prompt_messages: list[int] = attrs.field(factory=list)  # per conversation: how many messages were the prompt's

    def episode_rewards(self, how: Literal["sum", "last"]) -> torch.Tensor:
        """Each conversation's reward `# [N]`: its turns' sum, or its last turn's (grpo.multi_turn_reward)."""
        return self.last_rewards if how == "last" else self.rewards

    def __attrs_post_init__(self) -> None:
        if self.correct is None:
            self.correct = self.rewards >= 1.0
        if self.last_rewards is None:
            self.last_rewards = self.rewards.clone()
        if self.max_turns_reached is None:
            self.max_turns_reached = torch.zeros(len(self.rewards), dtype=torch.bool)


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
    bridge: TurnBridge | None = None,
) -> RolloutResult:
    """Roll out every prompt once (repeat prompts beforehand for G samples per prompt).

    With a `timer`, generation and environment time are recorded as the phases "generation" and "reward".
    `bridge` renders what goes between turns (default: the tokenizer's chat template without tools).
    """
    timer = timer or Timer()
    bridge = bridge or TurnBridge(tokenizer)
    rows = [
        _Row(ids=list(p["input_ids"]), prompt_length=len(p["input_ids"]), messages=list(p["messages"]), metadata=p["metadata"],
             prompt_messages=len(p["messages"]))
        for p in prompts
    ]
    counts = frozenset(getattr(environment, "summed_metrics", ()))
    metric_sums: dict[str, float] = {}
    metric_weights: dict[str, int] = {}
    for turn in range(max_turns):
        for row in rows:
            if not row.done and max_total_length - len(row.ids) < 1:  # no room for one more token
                row.done = row.truncated = True
        active = [i for i, row in enumerate(rows) if not row.done]
        if not active:
            break
        with timer.phase("generation"):
            for group, group_sampling in _turn_groups(rows, active, sampling, max_total_length, turn):
                _generate(rows, group, generation, tokenizer, group_sampling)
        with timer.phase("reward"):
            result = environment.step([rows[i].messages for i in active], [rows[i].metadata for i in active])
        for key, value in result.metrics.items():  # counts add up; means are weighted by the rows they cover
            metric_sums[key] = metric_sums.get(key, 0.0) + (value if key in counts else value * len(active))
            metric_weights[key] = metric_weights.get(key, 0) + len(active)
        for j, i in enumerate(active):
            _record_step(rows[i], result, j, turn)
            _end_or_continue(rows[i], result, j, last_turn=turn == max_turns - 1, bridge=bridge, max_total_length=max_total_length)
    env_metrics = {k: v if k in counts else v / max(metric_weights[k], 1) for k, v in metric_sums.items()}
    return _to_result(rows, tokenizer, env_metrics)


def _turn_groups(
    rows: list[_Row], active: list[int], sampling: SamplingParams, max_total_length: int, turn: int
) -> list[tuple[list[int], SamplingParams]]:
    """Active rows grouped by (stop strings, token budget), each group with its own sampling, in first-seen order."""
    groups: dict[tuple[tuple[str, ...], int], list[int]] = {}
    for i in active:
        row = rows[i]
        stops = row.stop_strings if row.stop_strings is not None else sampling.stop_strings
        budget = min(sampling.max_new_tokens, max_total_length - len(row.ids))
        groups.setdefault((stops, budget), []).append(i)
    out = []
    for g, ((stops, budget), members) in enumerate(groups.items()):
        # Every (turn, group) draws from its own seeded stream; the first group of the first turn keeps the run's seed.
        seed = sampling.seed if sampling.seed is None else (sampling.seed + 1_000_003 * turn + 7919 * g) % 2**31
        out.append((members, attrs.evolve(sampling, max_new_tokens=budget, stop_strings=stops, n=1, seed=seed)))
    return out


def _generate(rows: list[_Row], group: list[int], generation: GenerationBackend, tokenizer: Any, sampling: SamplingParams) -> None:
    batch = Batch.from_sequences([rows[i].ids for i in group], pad_id=_pad_id(tokenizer))
    out = generation.generate(batch, sampling)
    output_ids = out["output_ids"]  # [A, T]
    logprobs = out["generation_logprobs"]  # [A, T]
    for j, i in enumerate(group):
        row = rows[i]
        start, stop = int(out["prompt_lengths"][j]), int(out["sequence_lengths"][j])
        if start != len(row.ids):
            raise RuntimeError(f"the generation backend reported a prompt of {start} tokens for a row of {len(row.ids)}")
        response = output_ids[j, start:stop].tolist()
        row.ids.extend(response)  # exactly the generator's ids: never decoded and re-encoded
        row.gen_mask.extend([1.0] * len(response))
        row.gen_logprobs.extend(logprobs[j, start:stop].tolist())
        row.turn_truncated = bool(out["truncated"][j])
        row.turn_tokens = len(response)
        text = tokenizer.decode(response, skip_special_tokens=True)
        row.messages.append({"role": "assistant", "content": text})


def _record_step(row: _Row, result: EnvironmentStep, j: int, turn: int) -> None:
    """Add the environment's answer for row `j` of this turn to the row."""
    reward = float(result.rewards[j])
    row.turns = turn + 1
    if j < len(result.info):
        row.info.update(result.info[j])
    if result.correct is not None:
        row.correct = bool(result.correct[j])
    if GUARD_ERROR in (result.info[j] if j < len(result.info) else {}):
        # the environment failed on this conversation (the guard counted it): the episode scores 0
        row.reward = row.last_reward = 0.0
        row.components = {}
        row.correct = False
        return
    row.reward += reward
    row.last_reward = reward
    for name, value in (result.reward_components[j] if result.reward_components is not None else {}).items():
        row.components[name] = row.components.get(name, 0.0) + float(value)
    stops = result.next_stop_strings[j] if result.next_stop_strings is not None else None
    row.stop_strings = tuple(stops) if stops is not None else None


def _end_or_continue(row: _Row, result: EnvironmentStep, j: int, *, last_turn: bool, bridge: TurnBridge, max_total_length: int) -> None:
    """End the episode (see the module docstring for why it can end), or append the observation's bridge."""
    observation = result.observations[j]
    if result.done[j] or observation is None or GUARD_ERROR in row.info:
        row.done = True
        row.truncated = row.turn_truncated  # it ended on a turn cut at max_new_tokens: a length limit ended it
    elif last_turn:
        row.done = row.max_turns_reached = True
        row.truncated = row.turn_truncated
    else:
        new_ids = bridge.ids(observation, row.ids[len(row.ids) - row.turn_tokens :])
        if len(row.ids) + len(new_ids) >= max_total_length:  # no room for the observation and one more token
            row.done = row.truncated = True
            return
        row.messages.append(dict(observation))
        row.ids.extend(new_ids)
        row.gen_mask.extend([0.0] * len(new_ids))
        row.gen_logprobs.extend([0.0] * len(new_ids))


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
    responses = ["".join(m["content"] for m in row.messages[row.prompt_messages :] if m["role"] == "assistant") for row in rows]
    return RolloutResult(
        batch=batch,
        rewards=torch.tensor([row.reward for row in rows], dtype=torch.float32),
        responses=responses,
        env_metrics=env_metrics,
        turns=[row.turns for row in rows],
        info=[row.info for row in rows],
        correct=torch.tensor([row.reward >= 1.0 if row.correct is None else row.correct for row in rows], dtype=torch.bool),
        last_rewards=torch.tensor([row.last_reward for row in rows], dtype=torch.float32),
        max_turns_reached=torch.tensor([row.max_turns_reached for row in rows], dtype=torch.bool),
        reward_components=[row.components for row in rows],
        prompt_messages=[row.prompt_messages for row in rows],
    )


def _pad_id(tokenizer: Any) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
