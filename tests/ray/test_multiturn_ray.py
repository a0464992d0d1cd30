"""Environments on Ray actors keep the verdict and the new per-conversation fields, and multi-turn rollouts
do not depend on how many actors score them (a stateless environment replays each conversation)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest
import torch

from reinforge.core.batch import Batch
from reinforge.core.env_guard import guard_environment
from reinforge.core.registry import Registry, RegistrySettings
from reinforge.core.run_config import ClusterConfig, EnvConfig
from reinforge.core.sampling import SamplingParams
from reinforge.environments.sliding_puzzle import SlidingPuzzleEnvironment, as_board, puzzle_text
from reinforge.rollouts.turns import run_rollouts
from reinforge.testing import build_tokenizer

pytestmark = pytest.mark.ray

START = [[1, 2, 3], [4, 5, 6], [0, 7, 8]]


@pytest.fixture(scope="module")
def ray_session() -> Iterator[None]:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=4, include_dashboard=False, logging_level=logging.WARNING)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.create(RegistrySettings(load_entry_points=False))


def ray_environment(registry, workers: int):
    from reinforge.executors.ray.executor import RayExecutor

    executor = RayExecutor(ClusterConfig(executor="ray", cpus_per_worker=0.25, environment_workers=workers), registry)
    return executor, executor.environment(EnvConfig(name="sliding_puzzle"))


def conversations():
    """Seven conversations in different states: solved, mid-way, an illegal move, no move."""
    meta = {"problem": puzzle_text(as_board(START)), "board": START}
    replies = [["\\boxed{7}", "\\boxed{8}"], ["\\boxed{7}"], ["\\boxed{3}"], ["hm"], ["\\boxed{7}", "\\boxed{5}"],
               ["\\boxed{7}", "\\boxed{8}"], ["\\boxed{5}"]]
    out = []
    for turns in replies:
        messages = [{"role": "user", "content": meta["problem"]}]
        for reply in turns:
            messages += [{"role": "assistant", "content": reply}, {"role": "user", "content": "(board)"}]
        out.append(messages[:-1])
    return out, [dict(meta) for _ in out]


@pytest.mark.parametrize("workers", [2, 3])
def test_merge_steps_keeps_correct_and_the_per_conversation_fields(ray_session, registry, workers):
    convs, meta = conversations()
    local = SlidingPuzzleEnvironment().step(convs, meta)
    assert local.correct == [True, False, False, False, False, True, False]
    executor, env = ray_environment(registry, workers)
    try:
        remote = env.step(convs, meta)
    finally:
        executor.shutdown()
    assert remote.correct == local.correct, "the verdict survives the chunks (it fell back to reward >= 1 before)"
    assert remote.rewards == local.rewards and remote.observations == local.observations and remote.done == local.done
    assert remote.reward_components == local.reward_components and remote.info == local.info
    assert remote.next_stop_strings is None
    assert remote.metrics["solved"] == 2.0 and remote.metrics["invalid_moves"] == 3.0  # counts add up over actors


class MoveGeneration:
    """Each row replies with a move chosen by its own tokens (so rows differ, and a row's reply depends only on it)."""

    def __init__(self, tokenizer):
        self.replies = [list(tokenizer(t, add_special_tokens=False)["input_ids"]) + [2]  # + <|im_end|>
                        for t in ("\\boxed{7}", "\\boxed{8}", "\\boxed{5}", "\\boxed{3}", "no move")]

    def generate(self, batch: Batch, sampling: SamplingParams) -> Batch:
        rows = [batch["input_ids"][r, : int(batch["input_lengths"][r])].tolist() for r in range(len(batch))]
        sequences = [row + self.replies[sum(row) % len(self.replies)] for row in rows]
        padded = Batch.from_sequences(sequences, pad_id=0)
        logprobs = torch.zeros_like(padded["input_ids"], dtype=torch.float32)
        for r, row in enumerate(rows):
            logprobs[r, len(row) : len(sequences[r])] = -0.5
        return Batch(
            output_ids=padded["input_ids"],
            prompt_lengths=torch.tensor([len(r) for r in rows]),
            generation_lengths=torch.tensor([len(s) - len(r) for s, r in zip(sequences, rows)]),
            sequence_lengths=padded["input_lengths"],
            generation_logprobs=logprobs,
            truncated=torch.zeros(len(rows), dtype=torch.bool),
        )


def test_a_stateless_environment_gives_identical_rollouts_with_1_and_3_workers(ray_session, registry):
    tokenizer = build_tokenizer()
    records = [{"problem": puzzle_text(as_board(START)), "board": START, "index": i} for i in range(6)]
    prompts = []
    for k, record in enumerate(records):
        messages = [{"role": "user", "content": record["problem"] + " " * k}]  # rows start apart
        ids = list(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False))
        prompts.append({"input_ids": ids, "messages": messages, "metadata": record})
    results = {}
    for workers in (1, 3):
        executor, env = ray_environment(registry, workers)
        generation = MoveGeneration(tokenizer)
        try:
            results[workers] = run_rollouts(
                prompts, generation=generation, environment=guard_environment(env, name="sliding_puzzle"), tokenizer=tokenizer,
                sampling=SamplingParams(max_new_tokens=16), max_total_length=512, max_turns=4,
            )
        finally:
            executor.shutdown()
    one, three = results[1], results[3]
    assert one.batch["input_ids"].tolist() == three.batch["input_ids"].tolist()
    assert one.rewards.tolist() == three.rewards.tolist() and one.turns == three.turns
    assert one.correct.tolist() == three.correct.tolist() and one.reward_components == three.reward_components
    assert max(one.turns) > 1 and len(set(one.rewards.tolist())) > 1, "the episodes really went several turns, differently"
