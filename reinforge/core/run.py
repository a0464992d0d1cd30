"""`RunParts`: the built parts of one run, as the algorithm and the loop see them (seams only).

The composition root (`reinforge.Trainer`) builds them — backends through an executor, data
through the algorithm's `prepare_data`, loggers through the registry — and hands them to the
algorithm's `setup` and to the loop. Nothing here knows which plugin made a part.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from reinforge.core.interfaces import Environment, GenerationBackend, TrainingBackend
from reinforge.core.loop import LoopConfig
from reinforge.core.model_config import ModelConfig
from reinforge.core.run_config import DataConfig, EnvConfig, GenerationConfig, PolicyConfig
from reinforge.core.sampling import SamplingParams
from reinforge.core.timer import Timer

if TYPE_CHECKING:
    from reinforge.core.registry import Registry


class RecordLoader(Protocol):
    """An endless, resumable stream of training batches (`reinforge.data.loader.PromptLoader`)."""

    batch_size: int  # records per batch

    def __next__(self) -> list[Any]: ...

    def peek(self, ahead: int = 0) -> list[Any]:
        """The batch `ahead` after the next one, read without moving the stream or its saved position."""
        ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class RunLogger(Protocol):
    """Where the loop and the algorithm send metrics and samples (`reinforge.loggers.MultiLogger`)."""

    def log(self, metrics: Mapping[str, Any], step: int) -> None: ...

    def log_samples(self, samples: Sequence[dict[str, Any]], step: int) -> None: ...

    def log_config(self, config: Mapping[str, Any]) -> None: ...

    def close(self) -> None: ...


@attrs.frozen
class StepWork:
    """One training step's rollouts, as an algorithm asks for them ahead of time (asynchronous GRPO).

    The groups are generated with exactly these prompts and this sampling (its seed is the step's), so a
    step trains what the synchronous run would; `min_version` is the admission bound: weights older than
    that policy version may not start it.
    """

    step: int  # the training step that will train these groups
    prompts: list[Any]  # that step's prompts, each rolled out `group_size` times (its samples adjacent)
    group_size: int
    sampling: SamplingParams
    max_turns: int = 1
    min_version: int = 0  # the oldest generator weights (policy version) allowed to start this work


@attrs.frozen
class StepGroups:
    """A step's scored groups (a `reinforge.rollouts.RolloutResult`) and what the rollout service knows about them."""

    step: int
    result: Any
    version: int  # the policy version of the weights that generated them
    # How the producer spent its time since the last take, and its queue (async/... metrics); {} when synchronous.
    stats: dict[str, float] = attrs.field(factory=dict)
    # The generator's own phases since the last take ("generation", "reward" seconds), measured on the producer
    # thread, for the trainer's Timer (so `timing/generation_idle` means what it means synchronously); {} when
    # synchronous (the rollout service timed them on the trainer's Timer already).
    phases: dict[str, float] = attrs.field(factory=dict)


class Rollouts(Protocol):
    """The rollout service (`reinforge.rollouts.RolloutService`): collect scored rollouts, keep the generator fresh.

    `submit` / `take` let an algorithm ask for a future step's groups ahead of time; the asynchronous
    service (`reinforge.rollouts.async_service`) generates them on a producer thread while the current
    step trains, the synchronous one simply generates on `take`. `paused()` holds the producer between
    its batches (refit, validation, checkpoints); `shutdown()` stops it before the generator is shut down.
    """

    def collect(self, prompts: list[dict[str, Any]], sampling: SamplingParams, *, max_turns: int = 1) -> Any: ...

    def sync(self, policy: TrainingBackend, version: int, *, bucket_bytes: int) -> dict[str, float]: ...

    def mark_stale(self) -> None: ...

    def check_turns(self) -> None:
        """Raise now if the chat template cannot bridge the environment's observations between turns."""
        ...

    def submit(self, work: StepWork) -> None:
        """Ask for `work.step`'s groups ahead of time (a no-op where nothing runs ahead)."""
        ...

    def take(self, work: StepWork) -> StepGroups:
        """`work.step`'s groups, generated for exactly `work.prompts` (waiting for them, or generating them now)."""
        ...

    def paused(self) -> AbstractContextManager[None]:
        """Within it nothing generates in the background: the generator is the caller's (refit, validation, saves)."""
        ...

    def shutdown(self) -> None:
        """Stop generating in the background (the generator itself is shut down by `RunParts.shutdown`)."""
        ...


class Executor(Protocol):
    """Where the parts run: in this process (`reinforge.executors.local`) or on Ray worker groups.

    It builds the three parts an algorithm drives and hands back objects that implement the seams
    of `reinforge.core.interfaces` (the plugin objects themselves, or worker-group proxies), so
    algorithm code never changes with the executor. Each part gets its own config only.
    """

    def training(self, policy: PolicyConfig, *, need_reference: bool, seed: int) -> TrainingBackend: ...

    def generation(self, model: ModelConfig, generation: GenerationConfig, *, seed: int) -> GenerationBackend: ...

    def environment(self, env: EnvConfig) -> Environment: ...

    def shutdown(self) -> None: ...


@attrs.define
class RunParts:
    """Everything an algorithm drives during a run (built once, shared by train_step and validate)."""

    tokenizer: Any
    policy: TrainingBackend
    # The training side's settings: batch sizes, sequence length, optimizer.
    policy_config: PolicyConfig
    # The generator's settings: engine and sampling defaults (None when the algorithm does not generate).
    generation_config: GenerationConfig | None
    generation: GenerationBackend | None
    environment: Environment | None
    train_prompts: list[Any]
    val_prompts: list[Any]
    loader: RecordLoader
    logger: RunLogger
    timer: Timer
    executor: Executor
    loop: LoopConfig
    rollouts: Rollouts | None = None  # built when the algorithm generates
    prompt_stats: dict[str, Any] = attrs.field(factory=dict)
    config: Any = None  # the YAML run config, when the run was built from one (saved with checkpoints)
    # The prompt options the records were prepared with (template, system prompt), for messages that name them.
    data: DataConfig | None = None
    # The plugin registry the run was built with: an algorithm resolves the named parts it uses itself
    # (GRPO's advantage estimator) through it, so project plugins are found and nothing is loaded twice.
    registry: Registry | None = None

    def shutdown(self) -> None:
        if self.rollouts is not None:  # the producer first: it may be using the generator and the environment
            self.rollouts.shutdown()
        for part in (self.generation, self.environment, self.policy):
            if part is not None:
                part.shutdown()
        self.executor.shutdown()
        self.logger.close()
