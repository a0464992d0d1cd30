"""Rewards that hang, raise, answer NaN or the wrong number of values: the run loses at most those
rewards (scored 0, counted), or stops with a message naming the environment; never hangs.

The first half drives `GuardedEnvironment` directly with fakes; the second runs `reinforge train`
(in-process, the console script's code path) on the tiny model with the misbehaving environments of
`fault_envs.py` loaded as a project plugin.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from reinforge.cli.main import main
from reinforge.core.env_guard import FAILURES, GUARD_ERROR, TIMEOUTS, EnvGuardConfig, GuardedEnvironment, guard_environment
from reinforge.core.errors import ReinforgeError
from reinforge.core.interfaces import EnvironmentStep
from tests.integration.grpo_helpers import CPU_RECIPE, OFFLINE_ENV, read_metrics, tiny_overrides

pytest_plugins = ["reinforge.testing.fixtures"]

HERE = Path(__file__).resolve().parent


class ScriptedEnvironment:
    """Scores conversation i with `rewards[i]`; rows in `raise_on` raise, rows in `hang_on` block until released."""

    summed_metrics = ("num_answers",)

    def __init__(self, rewards: list[float], *, raise_on: set[int] = frozenset(), hang_on: set[int] = frozenset()) -> None:
        self.rewards = rewards
        self.raise_on = raise_on
        self.hang_on = hang_on
        self.calls: list[list[int]] = []
        self.release = threading.Event()

    def step(self, conversations: list, metadata: list) -> EnvironmentStep:
        rows = [m["row"] for m in metadata]
        self.calls.append(rows)
        if any(r in self.hang_on for r in rows):
            self.release.wait(30)
        bad = [r for r in rows if r in self.raise_on]
        if bad:
            raise KeyError(f"no score for row {bad[0]}")
        n = len(rows)
        return EnvironmentStep(
            rewards=[self.rewards[r] for r in rows],
            observations=[{"role": "user", "content": f"obs {r}"} for r in rows],
            done=[False] * n,
            metrics={"num_answers": float(n), "mean_row": sum(rows) / n},
            info=[{"row": r} for r in rows],
        )

    def shutdown(self) -> None:
        self.release.set()


def _inputs(n: int) -> tuple[list, list]:
    return [[{"role": "assistant", "content": str(i)}] for i in range(n)], [{"row": i} for i in range(n)]


def _guard(env: Any, **config: Any) -> GuardedEnvironment:
    return GuardedEnvironment(env, name="scripted", config=EnvGuardConfig(**config))


def test_a_healthy_environment_passes_through_with_zero_counters():
    env = ScriptedEnvironment([0.5, 1.0, 0.0])
    step = _guard(env).step(*_inputs(3))
    assert step.rewards == [0.5, 1.0, 0.0]
    assert step.metrics == {"num_answers": 3.0, "mean_row": 1.0, FAILURES: 0.0, TIMEOUTS: 0.0}
    assert env.calls == [[0, 1, 2]]  # one batch call, no retries


def test_a_raising_conversation_scores_zero_and_is_counted_and_logged(caplog):
    env = ScriptedEnvironment([0.25 * i for i in range(8)], raise_on={5})
    with caplog.at_level(logging.WARNING, logger="reinforge.core.env_guard"):
        step = _guard(env, max_failure_rate=0.2).step(*_inputs(8))
    assert step.rewards == [0.0, 0.25, 0.5, 0.75, 1.0, 0.0, 1.5, 1.75]
    assert step.metrics[FAILURES] == 1.0 and step.metrics[TIMEOUTS] == 0.0
    assert step.info[5] == {GUARD_ERROR: "raised KeyError: 'no score for row 5'"}
    assert step.info[4] == {"row": 4}
    # observations and done flags of the good rows survive the one-by-one retry (multi-turn environments)
    assert step.observations[4] == {"role": "user", "content": "obs 4"} and step.observations[5] is None
    assert step.done == [False] * 5 + [True] + [False] * 2
    # counts add up over the retried rows, other metrics average over the rows that reported them
    assert step.metrics["num_answers"] == 7.0
    assert step.metrics["mean_row"] == pytest.approx((0 + 1 + 2 + 3 + 4 + 6 + 7) / 7)
    assert env.calls == [list(range(8)), *[[i] for i in range(8)]]
    messages = [r.getMessage() for r in caplog.records]
    assert any("conversation 5 of 8 raised KeyError" in m and "scores 0" in m for m in messages), messages


def test_a_hanging_conversation_times_out_and_the_rest_still_score():
    env = ScriptedEnvironment([1.0] * 10, hang_on={3})
    try:
        step = _guard(env, timeout_s=0.3, sample_timeout_s=0.3, max_failure_rate=0.1).step(*_inputs(10))
    finally:
        env.release.set()
    assert step.rewards == [1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert step.metrics[TIMEOUTS] == 1.0 and step.metrics[FAILURES] == 0.0
    assert step.info[3] == {GUARD_ERROR: "did not finish within 0.3 s"}


def test_failures_above_the_budget_stop_the_run_naming_the_environment():
    env = ScriptedEnvironment([1.0] * 10, raise_on={1, 4})
    with pytest.raises(ReinforgeError) as err:
        _guard(env, max_failure_rate=0.1).step(*_inputs(10))
    text = str(err.value)
    assert "environment 'scripted' failed on more than 10% of a batch of 10 conversations" in text
    assert "2 raised, 0 timed out" in text and "conversation 4 raised KeyError" in text
    assert "env.guard.max_failure_rate" in text
    # it stopped at the failure that broke the budget, without trying rows 5..9
    assert env.calls[-1] == [4]


def test_an_environment_that_always_hangs_stops_after_the_budget_not_after_every_row():
    env = ScriptedEnvironment([1.0] * 20, hang_on=set(range(20)))
    try:
        with pytest.raises(ReinforgeError, match=r"0 raised, 3 timed out"):
            _guard(env, timeout_s=0.2, sample_timeout_s=0.1, max_failure_rate=0.1).step(*_inputs(20))
    finally:
        env.release.set()
    assert len(env.calls) == 1 + 3  # the batch, then rows 0, 1, 2: the budget allows floor(0.1 * 20) = 2


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_a_non_finite_reward_is_an_error_naming_the_environment_and_the_row(bad):
    env = ScriptedEnvironment([1.0, bad, 0.0])
    with pytest.raises(ReinforgeError) as err:
        _guard(env).step(*_inputs(3))
    assert f"environment 'scripted' (ScriptedEnvironment) returned a non-finite reward ({bad}) for conversation 1" in str(err.value)


@pytest.mark.parametrize("field", ["rewards", "observations", "done"])
def test_a_wrong_number_of_values_is_an_error(field):
    class Short(ScriptedEnvironment):
        def step(self, conversations: list, metadata: list) -> EnvironmentStep:
            full = super().step(conversations, metadata)
            values = {"rewards": full.rewards, "observations": full.observations, "done": full.done}
            values[field] = values[field][:-1]
            return EnvironmentStep(**values)

    with pytest.raises(ReinforgeError, match=rf"returned 3 {field} for 4 conversations"):
        _guard(Short([1.0] * 4)).step(*_inputs(4))


def test_a_reward_that_is_not_a_number_or_a_result_that_is_not_a_step_is_an_error():
    with pytest.raises(ReinforgeError, match=r"reward that is not a number for conversation 0: 'high'"):
        _guard(ScriptedEnvironment(["high"])).step(*_inputs(1))  # type: ignore[list-item]

    class Plain(ScriptedEnvironment):
        def step(self, conversations: list, metadata: list) -> Any:
            return [1.0] * len(conversations)

    with pytest.raises(ReinforgeError, match=r"returned list from step\(\); it must return .*EnvironmentStep"):
        _guard(Plain([1.0])).step(*_inputs(1))


def test_a_reinforge_error_from_the_environment_is_passed_on_unchanged():
    class NeedsAnswer(ScriptedEnvironment):
        def step(self, conversations: list, metadata: list) -> EnvironmentStep:
            self.calls.append([])
            raise ReinforgeError("the gold answer is missing")

    env = NeedsAnswer([1.0, 1.0])
    with pytest.raises(ReinforgeError, match="^the gold answer is missing$"):
        _guard(env, max_failure_rate=1.0).step(*_inputs(2))
    assert len(env.calls) == 1  # not retried row by row: it is not a flaky reward but a fixable setup


def test_a_hanging_shutdown_is_abandoned_after_the_deadline(caplog):
    class StuckOnExit(ScriptedEnvironment):
        def shutdown(self) -> None:
            self.release.wait(30)

    env = StuckOnExit([1.0])
    with caplog.at_level(logging.WARNING, logger="reinforge.core.env_guard"):
        _guard(env, sample_timeout_s=0.2).shutdown()
    env.release.set()
    assert [r.getMessage() for r in caplog.records] == ["environment 'scripted': shutdown did not finish within 0.2 s"]


def test_guarding_twice_wraps_once_and_summed_metrics_include_the_counters():
    env = ScriptedEnvironment([1.0])
    guarded = guard_environment(env, name="x")
    assert guard_environment(guarded, name="x") is guarded
    assert guarded.summed_metrics == {"num_answers", FAILURES, TIMEOUTS}


# ------------------------------------------------------------------ through `reinforge train`
@pytest.fixture
def fault_plugins(tmp_path: Path) -> Path:
    shutil.copy(HERE / "fault_envs.py", tmp_path / "fault_envs.py")
    (tmp_path / "plugins.toml").write_text('[plugins]\nlocal = ["fault_envs.py"]\n')
    return tmp_path / "plugins.toml"


def _train(tiny_model_dir: Path, out: Path, plugins: Path, *extra: str) -> int:
    overrides = tiny_overrides(tiny_model_dir, out, steps=1, extra=("checkpointing.enabled=false", *extra))
    return main(["--plugins", str(plugins), "train", "--config", str(CPU_RECIPE), *overrides])


def test_train_with_failing_rewards_within_budget_finishes_and_logs_the_counts(tiny_model_dir, tmp_path, fault_plugins, capsys):
    rc = _train(tiny_model_dir, tmp_path, fault_plugins, "env.name=raising", "env.env_cfg={fail_every: 1}", "env.guard.max_failure_rate=1.0")
    assert rc == 0, capsys.readouterr().err
    (row,) = [r for r in read_metrics(tmp_path / "logs") if "train/reward_mean" in r]
    assert row["env/failures"] == 8.0 and row["env/timeouts"] == 0.0  # 2 prompts x 4 generations, all raised
    assert row["train/reward_mean"] == 0.0


def test_train_with_a_raising_reward_stops_with_the_environment_named(tiny_model_dir, tmp_path, fault_plugins, capsys):
    rc = _train(tiny_model_dir, tmp_path, fault_plugins, "env.name=raising", "env.env_cfg={fail_every: 1}")
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err
    assert "environment 'raising' failed on more than 10% of a batch of 8 conversations" in err
    assert "ZeroDivisionError: reward function broke on answer" in err


def test_train_with_a_hanging_reward_stops_instead_of_blocking(tiny_model_dir, tmp_path, fault_plugins, capsys):
    rc = _train(
        tiny_model_dir,
        tmp_path,
        fault_plugins,
        "env.name=hanging",
        "env.env_cfg={fail_every: 1, hang_s: 30}",
        "env.guard.timeout_s=0.5",
        "env.guard.sample_timeout_s=0.2",
    )
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err
    assert "environment 'hanging' failed on more than 10%" in err and "did not finish within 0.2 s" in err


@pytest.mark.parametrize(
    ("env_name", "words"),
    [
        ("nan_reward", "environment 'nan_reward' (NaNEnvironment) returned a non-finite reward (nan) for conversation 0"),
        ("short", "environment 'short' (ShortEnvironment) returned 7 rewards for 8 conversations"),
    ],
)
def test_train_with_nan_or_wrong_length_rewards_stops_naming_the_environment(
    tiny_model_dir, tmp_path, fault_plugins, capsys, env_name, words
):
    rc = _train(tiny_model_dir, tmp_path, fault_plugins, f"env.name={env_name}", "env.env_cfg={fail_every: 1}")
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err
    assert words in " ".join(err.split())


def test_the_console_script_exits_while_a_reward_still_hangs(tiny_model_dir, tmp_path, fault_plugins):
    """The hung call's thread is a daemon: the process reports the error and exits instead of waiting for it."""
    overrides = tiny_overrides(tiny_model_dir, tmp_path, steps=1, extra=(
        "checkpointing.enabled=false", "env.name=hanging", "env.env_cfg={fail_every: 1, hang_s: 600}",
        "env.guard.timeout_s=0.5", "env.guard.sample_timeout_s=0.2",
    ))
    reinforge = str(Path(sys.executable).with_name("reinforge"))
    done = subprocess.run(
        [reinforge, "--plugins", str(fault_plugins), "train", "--config", str(CPU_RECIPE), *overrides],
        capture_output=True, text=True, env={**os.environ, **OFFLINE_ENV}, timeout=300,
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "environment 'hanging' failed on more than 10%" in " ".join(done.stderr.split())
