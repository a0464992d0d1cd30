"""The asynchronous rollout service on a generation backend whose speed the test controls (fast, slow, stalled).

The trainer side is driven here as GRPO drives it: at step k, refit to the weights after k - 1 steps,
submit steps k .. k + age (admission bound: weights of version >= k - 1 - age), take step k, "train".
The generator records the weights version at the start and at the end of every batch, so a refit
that landed mid-batch would show; every test has a deadline, so a hang fails instead of stalling CI.
"""

from __future__ import annotations

import threading
import time

import pytest
import torch

from reinforge.core.batch import Batch
from reinforge.core.errors import ReinforgeError
from reinforge.core.interfaces import EnvironmentStep
from reinforge.core.run import StepWork
from reinforge.core.sampling import SamplingParams
from reinforge.rollouts.async_service import AsyncRolloutService
from reinforge.rollouts.service import RolloutService
from reinforge.testing import build_tokenizer

IM_END = 2  # the tiny kit's <|im_end|>
GROUP = 2
PROMPTS_PER_STEP = 3
DEADLINE_S = 20.0


class PacedGeneration:
    """Answers every row with two tokens after `delay` seconds; `gate` cleared = stalled; `fail` = raise it.

    `batches` records (weights version at start, at end, sampling seed, rows) per call.
    """

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.version = 0
        self.gate = threading.Event()
        self.gate.set()
        self.fail: BaseException | None = None
        self.batches: list[tuple[int, int, int | None, int]] = []
        self.started = threading.Event()

    def generate(self, batch: Batch, sampling: SamplingParams) -> Batch:
        start = self.version
        self.started.set()
        if self.fail is not None:
            raise self.fail
        assert self.gate.wait(DEADLINE_S), "the test never released the stalled generator"
        time.sleep(self.delay)
        rows = [batch["input_ids"][r, : int(batch["input_lengths"][r])].tolist() for r in range(len(batch))]
        response = [5, IM_END]
        out = Batch.from_sequences([row + response for row in rows], pad_id=0)
        logprobs = torch.zeros(out["input_ids"].shape)
        for r, row in enumerate(rows):
            logprobs[r, len(row) : len(row) + len(response)] = -0.5
        self.batches.append((start, self.version, sampling.seed, len(rows)))
        return Batch(
            output_ids=out["input_ids"],
            prompt_lengths=torch.tensor([len(row) for row in rows]),
            generation_lengths=torch.tensor([len(response)] * len(rows)),
            sequence_lengths=out["input_lengths"],
            generation_logprobs=logprobs,
            truncated=torch.tensor([False] * len(rows)),
        )

    def update_weights(self, named_tensors) -> None:
        for _, tensor in named_tensors:
            self.version = int(tensor)

    def wake(self) -> None: ...

    def sleep(self) -> None: ...

    def shutdown(self) -> None: ...


class Policy:
    """A "trained policy" whose only weight is its version."""

    def __init__(self) -> None:
        self.version = 0

    def named_weights(self, bucket_bytes: int):
        yield [("version", torch.tensor(self.version))]


class Correct:
    def step(self, conversations, metadata):
        n = len(conversations)
        return EnvironmentStep(rewards=[1.0] * n, observations=[None] * n, done=[True] * n)

    def shutdown(self) -> None: ...


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


def prompts_of(tok, step: int) -> list[dict]:
    messages = [{"role": "user", "content": f"step {step}"}]
    ids = list(tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False))
    return [{"input_ids": ids, "messages": messages, "metadata": {"step": step, "i": i}} for i in range(PROMPTS_PER_STEP)]


def service(tok, generation) -> AsyncRolloutService:
    return AsyncRolloutService(generation, Correct(), tok, max_total_length=64, shutdown_timeout_s=5.0)


def work(step: int, prompts: list[dict], age: int) -> StepWork:
    return StepWork(
        step=step, prompts=prompts, group_size=GROUP, sampling=SamplingParams(max_new_tokens=4, seed=1000 + step),
        min_version=max(step - 1 - age, 0),
    )


def drive(tok, rollouts, steps: int, age: int, train_s: float, generation: PacedGeneration | None = None) -> list[dict]:
    """GRPO's side of the protocol, one optimizer step per training step; returns what each step took.

    With `generation`, each "training" step lasts until the producer has generated everything submitted
    (a generator faster than the trainer, without depending on how the machine schedules threads)."""
    policy, plan, taken = Policy(), {k: prompts_of(tok, k) for k in range(1, steps + age + 2)}, []
    submitted = 0
    for step in range(1, steps + 1):
        rollouts.sync(policy, policy.version, bucket_bytes=1)
        for target in range(max(step, submitted + 1), step + age + 1):
            rollouts.submit(work(target, plan[target], age))
            submitted = target
        groups = rollouts.take(work(step, plan[step], age))
        taken.append({"step": step, "age": policy.version - groups.version, "groups": groups, "prompts": plan[step]})
        time.sleep(train_s)
        deadline = time.monotonic() + DEADLINE_S
        while generation is not None and len(generation.batches) < submitted and time.monotonic() < deadline:
            time.sleep(0.005)
        policy.version += 1  # the optimizer step
    return taken


def check_run(taken, generation, age: int) -> None:
    for entry in taken:
        groups = entry["groups"]
        assert 0 <= entry["age"] <= age, entry  # the admission bound
        assert groups.step == entry["step"]
        metadata = groups.result.batch["metadata"]
        assert [m["i"] for m in metadata] == [i for i in range(PROMPTS_PER_STEP) for _ in range(GROUP)]  # whole groups, in order
        assert {m["step"] for m in metadata} == {entry["step"]}  # this step's own prompts
        assert groups.stats["async/regenerated_groups"] == 0  # nothing over the bound, nothing dropped
    for start, end, _, rows in generation.batches:
        assert start == end  # no refit landed mid-batch
        assert rows == PROMPTS_PER_STEP * GROUP  # one whole step per batch
    seeds = [seed for _, _, seed, _ in generation.batches]
    assert seeds == sorted(seeds) and len(set(seeds)) == len(seeds)  # oldest step first, each generated once
    # version tags: the version a step was tagged with is the weights its batch really started with
    by_seed = {seed: start for start, _, seed, _ in generation.batches}
    for entry in taken:
        assert entry["groups"].version == by_seed[1000 + entry["step"]]


@pytest.mark.parametrize("age", [0, 1, 2])
def test_a_fast_generator_runs_ahead_by_at_most_the_age(tok, age):
    generation = PacedGeneration(delay=0.0)
    rollouts = service(tok, generation)
    try:
        taken = drive(tok, rollouts, steps=6, age=age, train_s=0.0, generation=generation)
    finally:
        rollouts.shutdown()
    check_run(taken, generation, age)
    # a fast generator is always ahead: from step age + 1 on, every step trains groups exactly `age` steps old
    assert [e["age"] for e in taken[age:]] == [age] * (6 - age)
    assert max(e["groups"].stats["async/groups_ready"] for e in taken) <= age * PROMPTS_PER_STEP


@pytest.mark.parametrize("age", [0, 1])
def test_a_slow_generator_keeps_the_bound_and_the_trainer_waits(tok, age):
    generation = PacedGeneration(delay=0.05)
    rollouts = service(tok, generation)
    try:
        taken = drive(tok, rollouts, steps=5, age=age, train_s=0.0)
    finally:
        rollouts.shutdown()
    check_run(taken, generation, age)
    assert sum(e["groups"].stats["async/trainer_wait_s"] for e in taken) > 0.05 * 3
    assert sum(e["groups"].stats["async/producer_busy_s"] for e in taken) >= 0.05 * 5
    # the generator's own phases, measured on the producer thread, for the trainer's Timer
    generation = [e["groups"].phases["generation"] for e in taken]
    assert all(g >= 0.05 for g in generation) and all("reward" in e["groups"].phases for e in taken)


def test_admission_holds_work_until_the_weights_are_recent_enough(tok):
    """With the trainer stalled at version 0 and age 1, only steps 1 and 2 may start, however far ahead work is submitted."""
    generation = PacedGeneration()
    rollouts = service(tok, generation)
    policy = Policy()
    try:
        plan = {k: prompts_of(tok, k) for k in range(1, 7)}
        for step in range(1, 7):
            rollouts.submit(work(step, plan[step], age=1))
        deadline = time.monotonic() + DEADLINE_S
        while len(generation.batches) < 2 and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(0.3)  # time enough to start step 3, were it admitted
        assert [seed for _, _, seed, _ in generation.batches] == [1001, 1002]
        policy.version = 2
        rollouts.sync(policy, 2, bucket_bytes=1)  # weights after 2 steps: steps 3 (needs 1) and 4 (needs 2) may start
        groups = rollouts.take(work(4, plan[4], age=1))
        assert groups.version == 2
        assert [seed for _, _, seed, _ in generation.batches] == [1001, 1002, 1003, 1004]
        assert groups.stats["async/groups_ready"] == 3 * PROMPTS_PER_STEP  # steps 1-3 still wait for the trainer
        assert groups.stats["async/producer_wait_s"] > 0.25
    finally:
        rollouts.shutdown()


def test_a_refit_waits_for_the_stalled_batch_in_flight(tok):
    generation = PacedGeneration()
    generation.gate.clear()  # stalled
    rollouts = service(tok, generation)
    policy = Policy()
    try:
        plan = prompts_of(tok, 1)
        rollouts.submit(work(1, plan, age=1))
        assert generation.started.wait(DEADLINE_S)
        policy.version = 1
        refit = threading.Thread(target=rollouts.sync, args=(policy, 1), kwargs={"bucket_bytes": 1})
        refit.start()
        time.sleep(0.3)
        assert refit.is_alive() and generation.version == 0  # no weights delivered mid-batch
        generation.gate.set()
        refit.join(DEADLINE_S)
        assert not refit.is_alive() and generation.version == 1
        groups = rollouts.take(work(1, plan, age=1))
        assert groups.version == 0 and generation.batches[0][:2] == (0, 0)
    finally:
        generation.gate.set()
        rollouts.shutdown()


def test_a_generator_failure_surfaces_in_the_trainer_once_and_nothing_hangs(tok):
    generation = PacedGeneration()
    generation.fail = RuntimeError("CUDA error: an illegal memory access was encountered")
    rollouts = service(tok, generation)
    start = time.monotonic()
    plan = prompts_of(tok, 1)
    with pytest.raises(RuntimeError, match="illegal memory access") as raised:
        rollouts.submit(work(1, plan, age=1))
        rollouts.take(work(1, plan, age=1))
    assert raised.value is generation.fail  # the generator's own error, not a wrapper
    with pytest.raises(ReinforgeError, match="producer stopped after the generation error"):
        rollouts.take(work(1, plan, age=1))
    with pytest.raises(ReinforgeError, match="producer stopped"):
        rollouts.sync(Policy(), 1, bucket_bytes=1)
    rollouts.shutdown()
    assert time.monotonic() - start < 5.0
    assert not rollouts._thread.is_alive()


def test_groups_of_unknown_weights_are_regenerated_and_counted_never_trained(tok):
    generation = PacedGeneration()
    rollouts = service(tok, generation)
    policy = Policy()
    try:
        plan = {k: prompts_of(tok, k) for k in (1, 2)}
        for step in (1, 2):
            rollouts.submit(work(step, plan[step], age=1))
        first = rollouts.take(work(1, plan[1], age=1))
        deadline = time.monotonic() + DEADLINE_S
        while len(generation.batches) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        rollouts.mark_stale()  # e.g. the generator was rebuilt from the base model: step 2's groups are of unknown weights
        rollouts.sync(policy, 0, bucket_bytes=1)
        second = rollouts.take(work(2, plan[2], age=1))
        assert first.stats["async/regenerated_groups"] == 0
        assert second.stats["async/regenerated_groups"] == PROMPTS_PER_STEP
        assert [seed for _, _, seed, _ in generation.batches] == [1001, 1002, 1002]
        assert second.version == 0
    finally:
        rollouts.shutdown()


def test_groups_made_for_other_prompts_are_regenerated_for_the_step_s_own(tok):
    generation = PacedGeneration()
    rollouts = service(tok, generation)
    try:
        rollouts.submit(work(1, prompts_of(tok, 7), age=0))
        deadline = time.monotonic() + DEADLINE_S
        while not generation.batches and time.monotonic() < deadline:
            time.sleep(0.01)
        groups = rollouts.take(work(1, prompts_of(tok, 1), age=0))
        assert {m["step"] for m in groups.result.batch["metadata"]} == {1}
        assert groups.stats["async/regenerated_groups"] == PROMPTS_PER_STEP
        assert len(generation.batches) == 2
    finally:
        rollouts.shutdown()


def test_the_synchronous_service_takes_by_generating_now(tok):
    generation = PacedGeneration()
    rollouts = RolloutService(generation, Correct(), tok, max_total_length=64)
    rollouts.submit(work(2, prompts_of(tok, 2), age=0))
    assert generation.batches == []  # nothing runs ahead
    with rollouts.paused():
        groups = rollouts.take(work(2, prompts_of(tok, 2), age=0))
    assert groups.step == 2 and groups.version == 0 and groups.stats == {}
    assert generation.batches == [(0, 0, 1002, PROMPTS_PER_STEP * GROUP)]
    rollouts.shutdown()


def test_taking_groups_that_are_not_ready_while_holding_the_producer_fails_instead_of_hanging(tok):
    rollouts = service(tok, PacedGeneration())
    try:
        with rollouts.paused(), pytest.raises(RuntimeError, match="inside paused"):
            rollouts.take(work(1, prompts_of(tok, 1), age=0))
        assert rollouts.take(work(1, prompts_of(tok, 1), age=0)).step == 1  # held no more: it is generated
    finally:
        rollouts.shutdown()


def test_taking_a_step_whose_weights_were_never_delivered_fails_instead_of_hanging(tok):
    rollouts = service(tok, PacedGeneration())
    try:
        with pytest.raises(RuntimeError, match=r"needs generator weights of policy version >= 2, but the generator holds 0"):
            rollouts.take(work(5, prompts_of(tok, 5), age=2))  # step 5 at age 2 needs the weights after 2 steps
    finally:
        rollouts.shutdown()
