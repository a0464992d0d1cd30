"""Conformance tests that any `Environment` plugin (built-in or third-party) runs against itself.

Why: the rollout loop, the guard every run wraps an environment in, accuracy and majority voting
all rely on what `Environment.step` promises — one reward, observation and done flag per
conversation, in the order given; finite rewards; `correct` and `info` one per conversation or
absent; an observation (a message) exactly where a conversation goes on. A plugin proves it keeps
that promise by subclassing one class in its own tests:

    from reinforge.testing.conformance_environment import EnvironmentConformance

    class TestMyEnvironment(EnvironmentConformance):
        environment_class = MyEnvironment         # built as MyEnvironment(options), or MyEnvironment() without
        environment_options = MyConfig(...)       # or override make_environment()
        replies = (*EnvironmentConformance.replies, "<tool>2 + 3</tool>")   # a reply that makes it go on

The conversations are arithmetic questions (`{"problem", "answer"}` records, as the arithmetic
reader makes them) with a range of replies: right, wrong, unformatted, empty, very long, not ASCII.
Nothing here needs a model. `reinforge plugins check NAME` runs this suite against an installed
environment (`--reply TEXT` adds replies).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import pytest

from reinforge.core.env_guard import FAILURES, TIMEOUTS, EnvGuardConfig, guard_environment
from reinforge.core.interfaces import Environment, EnvironmentStep

RECORDS = (
    {"problem": "What is 2 + 3?", "answer": "5"},
    {"problem": "What is 12 - 7?", "answer": "5"},
    {"problem": "What is 6 * 7?", "answer": "42"},
)
REPLIES = (
    "2 + 3 = 5, so the answer is \\boxed{5}.",  # right, in the usual format
    "The answer is \\boxed{4}.",  # wrong
    "5",  # right, unformatted
    "",  # empty
    "I think " + "very " * 2000 + "hard about it.",  # long
    "答案是 \\boxed{五} 🙂 \x00",  # not ASCII, a NUL byte
    "\\boxed{",  # malformed markup
)


class EnvironmentConformance:
    """Mix into a `Test...` class; set `environment_class` (and `environment_options`) or override `make_environment`."""

    environment_class: ClassVar[Any] = None
    environment_options: ClassVar[Any] = None
    records: ClassVar[tuple[Mapping[str, Any], ...]] = RECORDS  # the metadata of the conversations
    replies: ClassVar[tuple[str, ...]] = REPLIES  # each record is asked with each reply
    system_prompt: ClassVar[str | None] = "Put your final answer within \\boxed{}."
    max_turns: ClassVar[int] = 4  # how many times a conversation that goes on is continued

    def make_environment(self) -> Environment:
        """Build the environment under test as the local executor does: `cls(options)`, or `cls()` without options."""
        if self.environment_class is None:
            raise NotImplementedError("set environment_class on the test class, or override make_environment()")
        if self.environment_options is None:
            return self.environment_class()
        return self.environment_class(self.environment_options)

    # ------------------------------------------------------------------ fixtures
    @pytest.fixture(scope="class")
    @classmethod
    def environment(cls) -> Iterator[Environment]:
        env = cls().make_environment()
        yield env
        env.shutdown()

    @pytest.fixture(scope="class")
    @classmethod
    def conversations(cls) -> tuple[list[list[dict[str, str]]], list[dict[str, Any]]]:
        """Every record with every reply, as the rollout hands them over: (conversations, metadata)."""
        conversations, metadata = [], []
        for index, record in enumerate(cls.records):
            for reply in cls.replies:
                system = [{"role": "system", "content": cls.system_prompt}] if cls.system_prompt is not None else []
                conversations.append([*system, {"role": "user", "content": str(record["problem"])}, {"role": "assistant", "content": reply}])
                metadata.append({**record, "index": index, "prompt_truncated": False})
        return conversations, metadata

    # ------------------------------------------------------------------ the answer's shape
    def test_is_an_environment(self, environment: Environment) -> None:
        assert isinstance(environment, Environment), "an environment has step(conversations, metadata) and shutdown()"

    def test_one_answer_per_conversation_of_the_right_types(self, environment: Environment, conversations: Any) -> None:
        convs, meta = conversations
        check_step(environment.step(convs, meta), len(convs))

    def test_an_empty_batch_gets_an_empty_answer(self, environment: Environment) -> None:
        check_step(environment.step([], []), 0)

    # ------------------------------------------------------------------ order and determinism
    def test_the_same_conversations_get_the_same_answer(self, environment: Environment, conversations: Any) -> None:
        convs, meta = conversations
        first, second = environment.step(convs, meta), environment.step(convs, meta)
        assert _verdicts(first) == _verdicts(second), "step() must be a function of the conversations and their metadata"

    def test_answers_follow_the_order_given(self, environment: Environment, conversations: Any) -> None:
        convs, meta = conversations
        forward = _verdicts(environment.step(convs, meta))
        backward = _verdicts(environment.step(convs[::-1], meta[::-1]))
        assert [row[::-1] if row is not None else None for row in backward] == forward, (
            "reversing the conversations must reverse the answers: each answer belongs to its conversation"
        )

    # ------------------------------------------------------------------ multi-turn
    def test_conversations_that_go_on_get_an_observation_and_can_be_continued(
        self, environment: Environment, conversations: Any
    ) -> None:
        convs, meta = [list(c) for c in conversations[0]], list(conversations[1])
        went_on = 0
        for _ in range(self.max_turns):
            step = environment.step(convs, meta)
            check_step(step, len(convs))
            going = [i for i, finished in enumerate(step.done) if not finished]
            if not going:
                break
            went_on += len(going)
            # As the rollout does: append the observation, then the model's next reply.
            convs = [[*convs[i], dict(step.observations[i]), {"role": "assistant", "content": "\\boxed{5}"}] for i in going]
            meta = [meta[i] for i in going]
        if not went_on:
            pytest.skip("no reply made this environment go on (single-turn, or add a reply that does: --reply TEXT)")

    # ------------------------------------------------------------------ under the guard
    def test_every_reply_is_answered_under_the_guard_without_failures(
        self, environment: Environment, conversations: Any
    ) -> None:
        convs, meta = conversations
        guarded = guard_environment(environment, name="conformance", config=EnvGuardConfig(max_failure_rate=1.0, sample_timeout_s=60.0))
        step = guarded.step(convs, meta)  # the guard's own checks: lengths, finite rewards, the step type
        assert step.metrics[FAILURES] == 0 and step.metrics[TIMEOUTS] == 0, (
            f"the environment raised or hung on some of the replies ({step.metrics[FAILURES]:g} failed, "
            f"{step.metrics[TIMEOUTS]:g} timed out); score a reply it cannot read 0 instead. Why: "
            f"{[info.get('env_error') for info in step.info if info.get('env_error')][:3]}"
        )


def check_step(step: Any, n: int) -> None:
    """Assert that `step` is a well-formed `EnvironmentStep` for `n` conversations (fields added later may be absent)."""
    assert isinstance(step, EnvironmentStep), f"step() returned {type(step).__name__}, not reinforge.EnvironmentStep"
    for name in ("rewards", "observations", "done"):
        assert len(getattr(step, name)) == n, f"{len(getattr(step, name))} {name} for {n} conversations"
    for i, reward in enumerate(step.rewards):
        assert isinstance(reward, (int, float)) and not isinstance(reward, bool), f"reward {i} is {reward!r}, not a number"
        assert math.isfinite(reward), f"reward {i} is {reward}"
    for i, (finished, observation) in enumerate(zip(step.done, step.observations)):
        assert isinstance(finished, bool), f"done[{i}] is {finished!r}, not a bool"
        if not finished:  # the rollout appends it to the conversation and generates again
            assert isinstance(observation, Mapping) and isinstance(observation.get("role"), str) and isinstance(
                observation.get("content"), str
            ), f"conversation {i} goes on, so its observation must be a {{role, content}} message, got {observation!r:.120}"
        else:
            assert observation is None or isinstance(observation, Mapping), f"observation {i} is {observation!r:.80}"
    if step.correct is not None:
        assert len(step.correct) == n and all(isinstance(c, bool) for c in step.correct), f"correct: {step.correct!r:.120}"
    assert step.info == [] or (len(step.info) == n and all(isinstance(i, Mapping) for i in step.info)), (
        f"info must be empty or one dict per conversation, got {len(step.info)} entries"
    )
    assert isinstance(step.metrics, Mapping), "metrics must be a mapping of name -> number"
    for key, value in step.metrics.items():
        assert isinstance(key, str) and isinstance(value, (int, float)) and math.isfinite(value), f"metric {key!r}: {value!r}"


def _verdicts(step: EnvironmentStep) -> list[Any]:
    """What a run reads from a step, row by row (observations as their text)."""
    return [
        [float(r) for r in step.rewards],
        list(step.done),
        [None if o is None else (o.get("role"), o.get("content")) for o in step.observations],
        None if step.correct is None else list(step.correct),
    ]
