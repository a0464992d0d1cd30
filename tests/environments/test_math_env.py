"""The math environment: verdicts, adversarial answers, and the life of its worker processes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip("math_verify")

from reinforge.core.errors import ReinforgeError  # noqa: E402
from reinforge.core.interfaces import Environment  # noqa: E402
from reinforge.environments import math as math_env  # noqa: E402
from reinforge.environments.math import MathEnvironment, MathEnvironmentConfig, extract_boxed_answer  # noqa: E402


def conversation(response: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": "Solve it."}, {"role": "assistant", "content": response}]


@pytest.fixture(scope="module")
def env() -> Iterator[MathEnvironment]:
    """One pool for the module: starting workers is the slow part."""
    environment = MathEnvironment(MathEnvironmentConfig())
    yield environment
    environment.shutdown()


def test_is_an_environment() -> None:
    assert isinstance(MathEnvironment(MathEnvironmentConfig()), Environment)


def test_verdicts(env: MathEnvironment) -> None:
    step = env.step(
        [conversation("2 + 2 = \\boxed{4}"), conversation("\\boxed{\\frac{8}{2}}"), conversation("3 * 4 = 13")],
        [{"answer": "4"}, {"answer": "4.0"}, {"answer": "\\boxed{12}"}],
    )
    assert step.rewards == [1.0, 1.0, 0.0]
    assert step.done == [True, True, True]
    assert step.observations == [None, None, None]
    assert [i["extracted_answer"] for i in step.info] == ["4", "\\frac{8}{2}", "13"]
    assert [i["verify_status"] for i in step.info] == ["verified"] * 3
    assert step.metrics["accuracy"] == pytest.approx(2 / 3)
    assert step.metrics["num_answers"] == 3
    assert step.metrics["verify_errors"] == step.metrics["verify_timeouts"] == 0


def test_joins_assistant_messages_and_counts_missing_answers(env: MathEnvironment) -> None:
    multi_turn = [
        {"role": "user", "content": "What is 6 * 7?"},
        {"role": "assistant", "content": "Let me think."},
        {"role": "user", "content": "Go on."},
        {"role": "assistant", "content": "It is \\boxed{42}."},
    ]
    step = env.step([multi_turn, conversation("I do not know.")], [{"answer": 42}, {"answer": "5"}])
    assert step.rewards == [1.0, 0.0]
    assert step.info[1]["verify_status"] == "no_answer"
    assert step.metrics["no_answer"] == 1


def test_adversarial_answers_score_zero_and_are_counted(env: MathEnvironment) -> None:
    step = env.step(
        [conversation("\\boxed{10^{10^{10^{10}}}}"), conversation("7 " * 51_200), conversation("\\boxed{7}")],
        [{"answer": "4"}, {"answer": "7"}, {"answer": "7"}],
    )
    # The power tower hits math-verify's own timeout (1 s under the default 5 s deadline); the
    # 100 KiB answer is over the default cap and refused before parsing; the good answer still scores.
    assert step.rewards == [0.0, 0.0, 1.0]
    assert [i["verify_status"] for i in step.info] == ["timeout", "too_long", "verified"]
    assert step.metrics["verify_timeouts"] == 1
    assert step.metrics["answers_too_long"] == 1
    assert step.metrics["accuracy"] == pytest.approx(1 / 3)


def test_hung_worker_is_killed_and_replaced() -> None:
    # With a 0.5 s deadline the power tower (which math-verify gives up on after 1 s) must be killed.
    environment = MathEnvironment(MathEnvironmentConfig(num_workers=1, verify_timeout=0.5))
    try:
        step = environment.step(
            [conversation("\\boxed{10^{10^{10^{10}}}}"), conversation("\\boxed{3}")],
            [{"answer": "4"}, {"answer": "3"}],
        )
        assert step.rewards == [0.0, 1.0]
        assert step.info[0]["verify_status"] == "timeout"
        assert "killed" in step.info[0]["verify_error"]
        assert step.metrics["verify_timeouts"] == 1
        assert step.metrics["worker_restarts"] == 1
        assert environment.step([conversation("\\boxed{5}")], [{"answer": "5"}]).rewards == [1.0]
    finally:
        environment.shutdown()


def test_pool_is_reused_survives_a_dead_worker_and_shuts_down() -> None:
    environment = MathEnvironment(MathEnvironmentConfig(num_workers=1))
    assert environment.step([], []).rewards == []
    assert environment._pool is None  # nothing to verify, nothing started
    try:
        environment.step([conversation("\\boxed{1}")], [{"answer": "1"}])
        pool = environment._pool
        assert pool is not None
        first = pool._workers[0].process
        environment.step([conversation("\\boxed{2}")], [{"answer": "2"}])
        assert environment._pool is pool and pool._workers[0].process is first

        first.kill()  # a worker dying between steps costs a restart, not an answer
        first.wait()
        step = environment.step([conversation("\\boxed{2}")], [{"answer": "2"}])
        assert step.rewards == [1.0]
        assert step.metrics["worker_restarts"] == 1

        # A run interrupted (Ctrl-C) while a job was in flight must not hand its late answer to the next run.
        worker = pool._workers[0]
        worker.conn.send(("\\boxed{9}", "\\boxed{9}"))
        worker.row = 0
        step = environment.step([conversation("\\boxed{1}")], [{"answer": "2"}])
        assert step.rewards == [0.0] and step.info[0]["extracted_answer"] == "1"
        assert step.metrics["worker_restarts"] == 1
        replacement = pool._workers[0].process
    finally:
        environment.shutdown()
    assert environment._pool is None
    assert replacement.poll() is not None and pool._workers == []


def test_worker_that_cannot_start_is_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(math_env, "_WORKER_CODE", "raise SystemExit(3)")
    environment = MathEnvironment(MathEnvironmentConfig(num_workers=1))
    with pytest.raises(ReinforgeError, match="math-verify"):
        environment.step([conversation("\\boxed{1}")], [{"answer": "1"}])
    environment.shutdown()


def test_missing_gold_answer_is_a_user_error() -> None:
    with pytest.raises(ReinforgeError, match=r"metadata\['answer'\].*'problem'"):
        MathEnvironment(MathEnvironmentConfig()).step([conversation("\\boxed{1}")], [{"problem": "1 + 0"}])


@pytest.mark.parametrize("field, value", [("num_workers", 0), ("verify_timeout", 0.0), ("max_answer_chars", 0)])
def test_config_rejects_out_of_range_values(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        MathEnvironmentConfig(**{field: value})


@pytest.mark.parametrize(
    "text, expected",
    [
        ("so \\boxed{4}", "4"),
        ("first \\boxed{1}, finally \\boxed{\\frac{1}{2}}.", "\\frac{1}{2}"),
        ("\\boxed{x^{2} + \\{1\\}}", "x^{2} + \\{1\\}"),
        ("\\boxed {7}", "7"),
        ("\\boxed 5$", "5"),
        ("\\fbox{9}", "9"),
        ("\\boxed{3} then an unfinished \\boxed{4", "3"),
        ("\\boxed{2} and an empty \\boxed{}", "2"),
        ("no box at all", None),
        ("\\boxed{unbalanced", None),
    ],
)
def test_extract_boxed_answer(text: str, expected: str | None) -> None:
    assert extract_boxed_answer(text) == expected


def test_worked_examples_in_the_prompt_are_not_the_answer() -> None:
    """data.example_turns put an assistant turn in the prompt; only the reply after the last user message counts."""
    with_example = [
        {"role": "system", "content": "Put the final answer in \\boxed{}."},
        {"role": "user", "content": "What is 12 + 5?"},
        {"role": "assistant", "content": "12 + 5 = 17. The answer is \\boxed{17}."},
        {"role": "user", "content": "What is 9 + 8?"},
    ]
    replies = ["9 + 8 is seventeen.", "9 + 8 = 17. The answer is \\boxed{17}.", "The answer is \\boxed{16}."]
    env = MathEnvironment(MathEnvironmentConfig(num_workers=1, require_boxed=True))
    try:
        step = env.step([[*with_example, {"role": "assistant", "content": r}] for r in replies], [{"answer": "17"}] * 3)
    finally:
        env.shutdown()
    assert step.rewards == [0.0, 1.0, 0.0]  # the example's \\boxed{17} never answers for the model
    assert [i["verify_status"] for i in step.info] == ["no_answer", "verified", "verified"]
    assert [i["extracted_answer"] for i in step.info] == [None, "17", "16"]
    assert step.metrics["no_answer"] == 1


def test_require_boxed_scores_only_the_boxed_answer():
    from reinforge.environments.math import MathEnvironment, MathEnvironmentConfig

    env = MathEnvironment(MathEnvironmentConfig(num_workers=1, require_boxed=True))
    try:
        conversations = [
            [{"role": "user", "content": "What is 7 - 5?"}, {"role": "assistant", "content": "7 - 5 = . The}."}],
            [{"role": "user", "content": "What is 7 - 5?"}, {"role": "assistant", "content": "7 - 5 = 2. The answer is \\boxed{2}."}],
            [{"role": "user", "content": "What is 7 - 5?"}, {"role": "assistant", "content": "7 - 5 = 3. \\boxed{3}"}],
        ]
        result = env.step(conversations, [{"answer": "2"}] * 3)
        assert result.rewards == [0.0, 1.0, 0.0]
    finally:
        env.shutdown()
    # Without the option, restating the question is (wrongly, for arithmetic) enough: why the option exists.
    lenient = MathEnvironment(MathEnvironmentConfig(num_workers=1))
    try:
        assert lenient.step(conversations[:1], [{"answer": "2"}]).rewards == [1.0]
    finally:
        lenient.shutdown()
