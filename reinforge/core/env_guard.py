"""`GuardedEnvironment`: what every environment a run builds is wrapped in, so that a bad reward
function costs its own rewards, never the run or the machine.

An environment is user code (a reward function, a tool, a game, a remote judge); it can hang,
raise, or answer nonsense. The guard:

- gives every `step` call a wall-clock deadline (`env.guard.timeout_s`; by default 60 s plus 2 s per
  conversation in the call, printed when the first call starts). The call runs in a
  daemon worker thread, so a call that never returns cannot block the training loop (threads
  cannot be killed: a hung call keeps its thread until the process exits, which is why the run
  also stops once too many calls fail; environments doing CPU-heavy work should bound it
  themselves, as `math` does with worker processes);
- when the batch call raises or misses its deadline, retries each conversation alone with its
  own deadline (`env.guard.sample_timeout_s`): a conversation that still fails scores 0 and is
  counted in `env/failures` or `env/timeouts`, and the first one of each step is logged with its
  error;
- stops the run with a `ReinforgeError` naming the environment when more than
  `env.guard.max_failure_rate` of a step's conversations failed, and at once when a call answers
  the wrong number of rewards (or observations, or done flags) or a NaN/inf reward: those are
  bugs in the environment, and training on them would only surface later as a NaN loss.
"""

from __future__ import annotations

import logging
import math
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
from attrs import validators as v

from reinforge.core.config import doc
from reinforge.core.errors import ReinforgeError
from reinforge.core.interfaces import Environment, EnvironmentStep

log = logging.getLogger(__name__)

FAILURES = "failures"  # logged as env/failures: conversations whose call raised, scored 0
TIMEOUTS = "timeouts"  # logged as env/timeouts: conversations whose call missed its deadline, scored 0
GUARD_ERROR = "env_error"  # info key holding why a conversation scored 0


@attrs.define(kw_only=True, frozen=True)
class EnvGuardConfig:
    """Deadlines and the failure budget every environment runs under (`env.guard`)."""

    # Proportional by default: a fixed 30 minutes held a run with a hung reward for half an hour on a
    # batch of 8. The math environment needs at most about verify_timeout / num_workers per answer on
    # pathological answers (2.5 s with its defaults; its own per-answer deadline is what bounds it).
    timeout_s: float | None = doc(
        "wall-clock seconds one environment call (a whole batch) may take; after that each conversation is retried "
        "alone. null = timeout_base_s + timeout_per_conversation_s x the conversations in the call (printed at start)",
        default=None,
        validator=v.optional(v.gt(0)),
    )
    timeout_base_s: float = doc("fixed part of the default deadline of a call (see timeout_s)", default=60.0, validator=v.gt(0))
    timeout_per_conversation_s: float = doc(
        "allowance per conversation of the default deadline of a call (see timeout_s)", default=2.0, validator=v.ge(0)
    )
    sample_timeout_s: float = doc(
        "wall-clock seconds one conversation may take when retried alone; then it scores 0 (counted in env/timeouts)",
        default=60.0,
        validator=v.gt(0),
    )

    def deadline_s(self, conversations: int) -> float:
        """The deadline of one call on `conversations` conversations."""
        if self.timeout_s is not None:
            return self.timeout_s
        return self.timeout_base_s + self.timeout_per_conversation_s * conversations

    def describe_deadline(self, conversations: int) -> str:
        """e.g. "76 s for a call on 8 conversations (60 s + 2 s per conversation; env.guard.timeout_s sets it)"."""
        how = (
            "env.guard.timeout_s"
            if self.timeout_s is not None
            else f"{self.timeout_base_s:g} s + {self.timeout_per_conversation_s:g} s per conversation; env.guard.timeout_s sets it"
        )
        return f"{self.deadline_s(conversations):g} s for a call on {conversations} conversations ({how})"
    max_failure_rate: float = doc(
        "share of a step's conversations that may fail (raise or time out, scored 0) before the run stops with an error",
        default=0.1,
        validator=[v.ge(0.0), v.le(1.0)],
    )


@attrs.define(frozen=True)
class _Outcome:
    """How one call ended: a result, or the exception it raised, or neither (it missed its deadline)."""

    result: Any = None
    error: BaseException | None = None
    timed_out: bool = False


def call_with_deadline(fn: Callable[[], Any], timeout_s: float, *, name: str) -> _Outcome:
    """Run `fn` in a daemon thread and wait at most `timeout_s` seconds for it."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller, which decides
            box["error"] = exc

    thread = threading.Thread(target=target, name=f"reinforge-env-{name}", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        return _Outcome(timed_out=True)
    return _Outcome(result=box.get("result"), error=box.get("error"))


class GuardedEnvironment:
    """Implements `Environment` around another one; see the module docstring for what it guards."""

    def __init__(self, environment: Environment, *, name: str, config: EnvGuardConfig | None = None) -> None:
        self.environment = environment
        self.name = name
        self.config = config if config is not None else EnvGuardConfig()
        inner = tuple(getattr(environment, "summed_metrics", ()))
        self.summed_metrics = frozenset((*inner, FAILURES, TIMEOUTS))
        # the roles its observations take, when it declares them (checked against the chat template at start)
        self.observation_roles = tuple(getattr(environment, "observation_roles", ()))
        self._announced = False  # the deadline rule is printed once, on the first call

    def step(self, conversations: list[list[dict[str, str]]], metadata: list[dict[str, Any]]) -> EnvironmentStep:
        n = len(conversations)
        deadline = self.config.deadline_s(n)
        if not self._announced:  # once: a multi-turn run calls with a new batch size almost every turn
            self._announced = True
            # stderr like run_guard.warn (not imported: run_guard -> checkpoint -> run_config imports this module)
            print(f"reinforge: environment '{self.name}': deadline {self.config.describe_deadline(n)}", file=sys.stderr, flush=True)
        outcome = call_with_deadline(lambda: self.environment.step(conversations, metadata), deadline, name=self.name)
        if _is_user_error(outcome.error):
            raise outcome.error  # type: ignore[misc] - a ReinforgeError already says what to fix
        if outcome.error is None and not outcome.timed_out:
            result = self._checked(outcome.result, n, rows=range(n))
            return attrs.evolve(result, metrics={**result.metrics, FAILURES: 0.0, TIMEOUTS: 0.0})
        why = _describe(outcome, deadline)
        log.warning(
            "environment '%s': a call on %d conversations %s; retrying each conversation alone (each within "
            "env.guard.sample_timeout_s=%g s) to find the one at fault", self.name, n, why, self.config.sample_timeout_s
        )
        return self._one_by_one(conversations, metadata)

    def shutdown(self) -> None:
        """Shut the environment down, under the per-conversation deadline: a hung environment must not hang the exit."""
        outcome = call_with_deadline(self.environment.shutdown, self.config.sample_timeout_s, name=self.name)
        if outcome.timed_out or outcome.error is not None:
            log.warning("environment '%s': shutdown %s", self.name, _describe(outcome, self.config.sample_timeout_s))

    # ----------------------------------------------------------------- internals
    def _one_by_one(self, conversations: list[list[dict[str, str]]], metadata: list[dict[str, Any]]) -> EnvironmentStep:
        n = len(conversations)
        allowed = math.floor(self.config.max_failure_rate * n + 1e-9)
        steps: list[EnvironmentStep] = []
        failures = timeouts = 0
        for i in range(n):
            outcome = call_with_deadline(
                lambda i=i: self.environment.step([conversations[i]], [metadata[i]]), self.config.sample_timeout_s, name=self.name
            )
            if _is_user_error(outcome.error):
                raise outcome.error  # type: ignore[misc]
            if outcome.error is None and not outcome.timed_out:
                steps.append(self._checked(outcome.result, 1, rows=[i]))
                continue
            failures += outcome.error is not None
            timeouts += outcome.timed_out
            why = _describe(outcome, self.config.sample_timeout_s)
            if failures + timeouts == 1:
                log.warning("environment '%s': conversation %d of %d %s; it scores 0", self.name, i, n, why)
            if failures + timeouts > allowed:
                raise ReinforgeError(
                    f"environment '{self.name}' failed on more than {self.config.max_failure_rate:.0%} of a batch of {n} "
                    f"conversations ({failures} raised, {timeouts} timed out before conversation {i + 1} was "
                    f"done; conversation {i} {why}). Fix the environment's reward function (try it on the "
                    "logged conversation), or raise env.guard.max_failure_rate / env.guard.sample_timeout_s / "
                    "env.guard.timeout_s if these failures are expected."
                )
            steps.append(_zero_step(why))
        merged = _merge(steps, self.summed_metrics)
        return attrs.evolve(merged, metrics={**merged.metrics, FAILURES: float(failures), TIMEOUTS: float(timeouts)})

    def _checked(self, result: Any, n: int, *, rows: Sequence[int]) -> EnvironmentStep:
        """`result` if it is a well-formed answer for `n` conversations, else a ReinforgeError naming the environment."""
        where = f"environment '{self.name}' ({type(self.environment).__name__})"
        if not isinstance(result, EnvironmentStep):
            raise ReinforgeError(
                f"{where} returned {type(result).__name__} from step(); it must return "
                "reinforge.core.interfaces.EnvironmentStep(rewards=..., observations=..., done=...)"
            )
        for field in ("rewards", "observations", "done"):
            got = len(getattr(result, field))
            if got != n:
                raise ReinforgeError(
                    f"{where} returned {got} {field} for {n} conversations; step() must return one entry per "
                    "conversation, in the order given"
                )
        for field, what in (("correct", "correct flags"), ("next_stop_strings", "stop-string sets"),
                            ("reward_components", "reward-component mappings")):
            value = getattr(result, field)
            if value is not None and len(value) != n:
                raise ReinforgeError(
                    f"{where} returned {len(value)} {what} for {n} conversations; EnvironmentStep.{field} must "
                    "have one entry per conversation, in the order given (or be None)"
                )
        for j, observation in enumerate(result.observations):
            _check_observation(where, observation, rows[j])
        for j, stops in enumerate(result.next_stop_strings or ()):
            if stops is not None and (isinstance(stops, str) or not all(isinstance(x, str) and x for x in stops)):
                raise ReinforgeError(
                    f"{where} returned next_stop_strings {stops!r:.120} for conversation {rows[j]}; each entry must be "
                    "None (the run's own stop strings) or a list of non-empty strings, e.g. ['</tool_call>']"
                )
        for j, components in enumerate(result.reward_components or ()):
            _check_components(where, components, rows[j])
        for j, reward in enumerate(result.rewards):
            try:
                value = float(reward)
            except (TypeError, ValueError):
                raise ReinforgeError(f"{where} returned a reward that is not a number for conversation {rows[j]}: {reward!r}") from None
            if not math.isfinite(value):
                raise ReinforgeError(
                    f"{where} returned a non-finite reward ({value}) for conversation {rows[j]}; rewards must be "
                    "finite numbers (a NaN or inf reward would turn the loss into NaN)"
                )
        return result


def _check_observation(where: str, observation: Any, row: int) -> None:
    if observation is None:
        return
    if not (isinstance(observation, Mapping) and isinstance(observation.get("role"), str)
            and isinstance(observation.get("content"), str)):
        raise ReinforgeError(
            f"{where} returned the observation {observation!r:.120} for conversation {row}; an observation must "
            "be None (the conversation is done) or a {'role': ..., 'content': ...} mapping of strings, e.g. "
            "{'role': 'user', 'content': 'Try again.'}, which the chat template renders as the next message"
        )


def _check_components(where: str, components: Any, row: int) -> None:
    if not isinstance(components, Mapping):
        raise ReinforgeError(
            f"{where} returned reward components {components!r:.120} for conversation {row}; each entry of "
            "EnvironmentStep.reward_components must be a mapping of names to numbers, e.g. {'answer': 1.0}"
        )
    for name, value in components.items():
        number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
        if not isinstance(name, str) or number is None or not math.isfinite(number):
            raise ReinforgeError(
                f"{where} returned the reward component {name!r}: {value!r:.60} for conversation {row}; reward "
                "components must be named by strings and be finite numbers (they are logged as "
                "train/reward/<name>_mean)"
            )


def _is_user_error(error: BaseException | None) -> bool:
    return isinstance(error, ReinforgeError)


def _describe(outcome: _Outcome, timeout_s: float) -> str:
    if outcome.timed_out:
        return f"did not finish within {timeout_s:g} s"
    error = outcome.error
    text = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
    return f"raised {type(error).__name__}" + (f": {text}" if text else "")


def _zero_step(why: str) -> EnvironmentStep:
    return EnvironmentStep(rewards=[0.0], observations=[None], done=[True], metrics={}, info=[{GUARD_ERROR: why}])


def _merge(steps: Sequence[EnvironmentStep], summed: frozenset[str]) -> EnvironmentStep:
    """One step from one-conversation steps: counts (`summed`) add up, other metrics average over the
    conversations that reported them."""
    keys = list(dict.fromkeys(k for s in steps for k in s.metrics))
    metrics: dict[str, float] = {}
    for key in keys:
        values = [float(s.metrics[key]) for s in steps if key in s.metrics]
        metrics[key] = sum(values) if key in summed else sum(values) / len(values)
    return EnvironmentStep(
        rewards=[r for s in steps for r in s.rewards],
        observations=[o for s in steps for o in s.observations],
        done=[d for s in steps for d in s.done],
        metrics=metrics,
        info=[s.info[0] if s.info else {} for s in steps],
        # a conversation that failed and scored 0 was not answered right
        correct=[bool(s.correct[0]) if s.correct else False for s in steps] if any(s.correct for s in steps) else None,
        next_stop_strings=[s.next_stop_strings[0] if s.next_stop_strings else None for s in steps]
        if any(s.next_stop_strings for s in steps) else None,
        reward_components=[dict(s.reward_components[0]) if s.reward_components else {} for s in steps]
        if any(s.reward_components for s in steps) else None,
    )


def guard_environment(environment: Environment, *, name: str, config: EnvGuardConfig | None = None) -> GuardedEnvironment:
    """`environment` wrapped in a `GuardedEnvironment` (an already guarded one is returned as it is)."""
    if isinstance(environment, GuardedEnvironment):
        return environment
    return GuardedEnvironment(environment, name=name, config=config)
