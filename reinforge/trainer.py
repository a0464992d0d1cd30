"""`Trainer`: the composition root. It takes the parts of a run — an algorithm, the trained policy,
a generator, an environment, data, the loop schedule, loggers — builds what needs building, and
runs the loop (`reinforge.core.training_loop.TrainingLoop`).

    trainer = Trainer(algorithm=GRPO(GRPOConfig(...)), policy=backends.DTensorTraining("model/"),
                      generation=backends.HFGeneration(max_new_tokens=64), environment=reward_fn,
                      train_data=records, loop=LoopConfig(max_steps=20))
    trainer.fit()

`Trainer.from_config(config)` builds exactly these objects from a YAML run config and calls the
same constructor, so the Python and YAML paths cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from reinforge.compose import build_run_parts
from reinforge.core.checkpoint import check_writable
from reinforge.core.errors import ReinforgeError
from reinforge.core.interfaces import Algorithm, Environment, GenerationBackend, Logger
from reinforge.core.loop import LoopConfig, loop_from_run_config
from reinforge.core.registry import Registry
from reinforge.core.run_config import ClusterConfig, DataConfig, LoggerConfig
from reinforge.core.specs import DatasetSpec, EnvironmentSpec, GenerationSpec, TrainingSpec
from reinforge.core.training_loop import TrainingLoop, seed_everything
from reinforge.environments.function import FunctionEnvironment

RewardFn = Callable[..., float]


class Trainer(TrainingLoop):
    """Build a run from its parts and train it with `fit()`.

    Args:
        algorithm: e.g. `GRPO(GRPOConfig(...))`, `SFT()`, `DPO()`, or any object with the `Algorithm` protocol.
        policy: the trained model and its training backend, e.g. `backends.DTensorTraining("model/", lr=1e-5)`.
        generation: the rollout generator, e.g. `backends.HFGeneration(max_new_tokens=64)` or
            `backends.VLLMGeneration(...)`, or a built `GenerationBackend` object (algorithms that generate);
            `backends.HFGeneration()` on the policy's model when omitted.
        environment: a reward function `(prompt, response, **metadata) -> float`, an `Environment`
            object, or `environments.Math(...)` (algorithms that need rewards).
        train_data, val_data: a list of dicts, a `datasets.Dataset`, or `data.Reader("name", options)`.
        loop: the schedule (steps, validation, checkpoints, seed); `LoopConfig()` by default.
        loggers: logger names (`"console"`, `"jsonl"`, ...) and/or `Logger` objects, or a `LoggerConfig`.
        log_dir: where the named loggers write (default: results/logs).
        data: prompt options (template, system prompt, longest prompt) as a `DataConfig`.
        cluster: where the parts run (`ClusterConfig(executor="ray", ...)`); one process by default.
        registry: the plugin registry (default: `Registry.create()`).
    """

    def __init__(
        self,
        *,
        algorithm: Algorithm,
        policy: TrainingSpec,
        generation: GenerationSpec | GenerationBackend | None = None,
        environment: EnvironmentSpec | Environment | RewardFn | None = None,
        train_data: Any,
        val_data: Any = None,
        loop: LoopConfig | None = None,
        loggers: LoggerConfig | Sequence[str | Logger] = ("console",),
        log_dir: str | None = None,
        data: DataConfig | None = None,
        cluster: ClusterConfig | None = None,
        registry: Registry | None = None,
        config: Any = None,
    ) -> None:
        _check_algorithm(algorithm)
        registry = registry or Registry.create()
        loop = loop or LoopConfig()
        logger_config, logger_objects = _loggers(loggers, log_dir)
        seed_everything(loop.seed)
        run = build_run_parts(
            algorithm=algorithm,
            policy=_training_spec(policy),
            generation=_generation_spec(generation),
            environment=_environment_spec(environment),
            train_data=train_data,
            val_data=val_data,
            loop=loop,
            data=data or DataConfig(),
            loggers=logger_config,
            extra_loggers=logger_objects,
            cluster=cluster or ClusterConfig(),
            registry=registry,
            config=config,
        )
        super().__init__(algorithm, run)

    @classmethod
    def from_config(
        cls,
        config: Any,
        registry: Registry | None = None,
        *,
        algorithm: Algorithm | None = None,
        policy: Any = None,
        generation: GenerationBackend | None = None,
        environment: Environment | None = None,
    ) -> Trainer:
        """Build every part of a YAML run config by name through the registry (or take the object
        passed for it) and call the constructor: `Trainer.from_config(load_config("recipe.yaml")).fit()`."""
        registry = registry or Registry.create()
        check_writable(config)  # before minutes of model loading, not at the first save
        if algorithm is None:
            algorithm = registry.algorithm(config.algorithm)(config)
        env_config = getattr(config, "env", None)  # only algorithms with rewards have an env: section
        data = config.data
        return cls(
            algorithm=algorithm,
            policy=TrainingSpec(policy=config.policy, instance=policy),
            generation=GenerationSpec(generation=config.policy.generation, instance=generation),
            environment=EnvironmentSpec(env=env_config, instance=environment) if env_config is not None else environment,
            train_data=DatasetSpec(name=data.dataset, options=data.dataset_cfg),
            val_data=DatasetSpec(name=data.val_dataset, options=data.val_dataset_cfg) if data.val_dataset else None,
            loop=loop_from_run_config(config),
            loggers=config.logger,
            data=data,
            cluster=config.cluster,
            registry=registry,
            config=config,
        )


def _check_algorithm(algorithm: Any) -> None:
    """An algorithm object, not its settings or its class: say which was passed and how to build one."""
    if all(callable(getattr(algorithm, method, None)) for method in ("setup", "train_step")) and not isinstance(algorithm, type):
        return
    name = algorithm.__name__ if isinstance(algorithm, type) else type(algorithm).__name__
    if isinstance(algorithm, type):
        got = f"the class {name} itself; pass an instance, e.g. algorithm=rf.{name}()"
    elif name.endswith("Config"):
        owner = {"GRPOConfig": "GRPO", "SFTConfig": "SFT", "DPOLossConfig": "DPO"}.get(name)
        example = f"rf.{owner}(rf.{name}(...))" if owner else "rf.GRPO(rf.GRPOConfig(...))"
        got = f"a {name}: a config was passed where an algorithm goes; wrap it in its algorithm: algorithm={example}"
    else:
        got = f"a {name}, which has no setup()/train_step(); pass e.g. algorithm=rf.GRPO(rf.GRPOConfig(...)), rf.SFT() or rf.DPO()"
    raise ReinforgeError(f"algorithm= must be an algorithm object (the Algorithm protocol); got {got}")


def _training_spec(policy: Any) -> TrainingSpec:
    if isinstance(policy, TrainingSpec):
        return policy
    raise ReinforgeError(
        f"policy must describe the trained model and its backend, e.g. reinforge.backends.DTensorTraining('model/'); "
        f"got {type(policy).__name__}. To use a training backend object you built yourself, pass "
        "reinforge.backends.Training(model_name=..., instance=your_backend)"
    )


def _generation_spec(generation: Any) -> GenerationSpec | None:
    if generation is None or isinstance(generation, GenerationSpec):
        return generation
    from reinforge.core.run_config import GenerationConfig

    return GenerationSpec(generation=GenerationConfig(), instance=generation)  # a built backend, default sampling


def _environment_spec(environment: Any) -> EnvironmentSpec | None:
    from reinforge.core.run_config import EnvConfig

    if environment is None or isinstance(environment, EnvironmentSpec):
        return environment
    if isinstance(environment, Environment):
        return EnvironmentSpec(env=EnvConfig(name="(object)"), instance=environment)
    if callable(environment):
        return EnvironmentSpec(env=EnvConfig(name="(function)"), instance=FunctionEnvironment(environment))
    raise ReinforgeError(
        f"environment must be a reward function (prompt, response, **metadata) -> float, an Environment "
        f"(step/shutdown) or reinforge.environments.Math(...); got {type(environment).__name__}"
    )


def _loggers(loggers: LoggerConfig | Sequence[str | Logger], log_dir: str | None) -> tuple[LoggerConfig, list[Logger]]:
    if isinstance(loggers, LoggerConfig):
        return loggers, []
    names = tuple(item for item in loggers if isinstance(item, str))
    objects = [item for item in loggers if not isinstance(item, str)]
    return LoggerConfig(loggers=names, log_dir=log_dir or "results/logs"), objects
