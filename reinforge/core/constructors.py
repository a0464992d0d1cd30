"""How each kind of plugin is constructed: one `typing.Protocol` per kind.

A plugin registers an implementation (a class or any callable); reinforge calls it with exactly
these arguments, in the driver (local executor) or inside a Ray worker (ray executor). The
registry's typed accessors (`Registry.training_backend(name)`, ...) return these types.

The options object is the instance of the config class the plugin registered (structured from
the YAML `backend_cfg:` / `env_cfg:` / `dataset_cfg:` / `advantage_estimator_cfg:` section), or
None when the section is absent: a plugin must then use its own defaults.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from reinforge.core.errors import ReinforgeError

if TYPE_CHECKING:
    import torch

    from reinforge.core.interfaces import Algorithm, Environment, GenerationBackend, Logger, TrainingBackend
    from reinforge.core.model_config import ModelConfig
    from reinforge.core.run_config import GenerationConfig, LoggerConfig, PolicyConfig


class TrainingBackendClass(Protocol):
    """`cls(policy, options, *, need_reference=..., seed=...) -> TrainingBackend`.

    `policy` describes the model and its training: `model_name`, `precision`, batch sizes
    (`train_global_batch_size` rows per `train` call, `train_micro_batch_size` per pass),
    `max_total_sequence_length`, `optimizer`, `scheduler` (`reinforge.backends.kit` computes
    the schedules), `max_grad_norm`. With `need_reference` the backend keeps a frozen copy of the
    initial weights for `reference_logprobs`. `seed` seeds initialisation and any sampling.
    A backend that supports only one worker must refuse to start on more (see the kit's
    `require_single_worker`), instead of training drifting copies.
    """

    def __call__(self, policy: PolicyConfig, options: Any, *, need_reference: bool, seed: int) -> TrainingBackend: ...


class GenerationBackendClass(Protocol):
    """`cls(model, options, *, generation=..., seed=...) -> GenerationBackend`.

    `model` (`ModelConfig`) says what to load: `model_name`, `tokenizer_name`, `chat_template`,
    `precision`, `max_total_sequence_length`. `options` are the backend's own engine options.
    `generation` (`GenerationConfig`) holds the run's sampling defaults (temperature, top-p/k,
    `max_new_tokens`, stops), e.g. to size an engine's batch; each `generate` call still brings
    its own `SamplingParams`. `seed` seeds calls whose `SamplingParams.seed` is None. A generator
    never sees the optimizer, the batch sizes or the training backend's options.

    A backend written against the signature before this one, `cls(policy, options, *, seed=...)`,
    keeps working: `build_generation_backend` calls it with the `ModelConfig` in place of the
    policy (it has the four fields such a backend was allowed to read) and warns once.
    """

    def __call__(self, model: ModelConfig, options: Any, *, generation: GenerationConfig, seed: int) -> GenerationBackend: ...


def build_generation_backend(
    cls: Any, model: ModelConfig, options: Any, *, generation: GenerationConfig, seed: int, name: str = ""
) -> GenerationBackend:
    """Construct a generation backend by the current signature, or by the old one (see GenerationBackendClass)."""
    if _accepts_keyword(cls, "generation"):
        return cls(model, options, generation=generation, seed=seed)
    import warnings

    label = name or getattr(cls, "__qualname__", repr(cls))
    warnings.warn(
        f"generation backend '{label}' is constructed as cls(policy, options, *, seed); it now receives "
        "cls(model: ModelConfig, options, *, generation: GenerationConfig, seed: int). It was given the ModelConfig "
        "(model_name, tokenizer_name, chat_template, precision, max_total_sequence_length) as `policy`; add the "
        "`generation` keyword to take the run's sampling defaults (see reinforge.core.constructors)",
        UserWarning,
        stacklevel=2,
    )
    return cls(model, options, seed=seed)


def _accepts_keyword(cls: Any, keyword: str) -> bool:
    import inspect

    try:
        parameters = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):  # a builtin or C callable without a signature: assume the current protocol
        return True
    return any(p.kind is p.VAR_KEYWORD or (p.name == keyword and p.kind is not p.POSITIONAL_ONLY) for p in parameters)


class EnvironmentClass(Protocol):
    """`cls(options)`, or `cls()` when the YAML gives no `env_cfg` -> Environment."""

    def __call__(self, options: Any = ...) -> Environment: ...


class AlgorithmClass(Protocol):
    """`cls(run_config) -> Algorithm`: built from the whole run config its plugin registered.

    The built-ins register a `from_run_config` classmethod here; their constructors take only
    their own settings (`GRPO(GRPOConfig(...), loss=...)`), for use from Python. A variant registered
    with `run_config="grpo"` is called with GRPO's run config (`config.algorithm` is its own name).
    """

    def __call__(self, run_config: Any) -> Algorithm: ...


class DatasetReader(Protocol):
    """`reader(options)`, or `reader()` without `dataset_cfg` -> records (dicts)."""

    def __call__(self, options: Any = ...) -> Iterable[dict[str, Any]]: ...


class LoggerClass(Protocol):
    """`cls(config, log_dir, *, run_name=..., total_steps=...[, options=...]) -> Logger`.

    `total_steps` feeds progress and ETA. A logger that registered an options class also receives
    `options=`: its own entry of `logger.logger_cfg` (e.g. `logger_cfg: {wandb: {project: demo}}`), or
    None when there is none (it must then use its defaults); a logger without one is called without it.
    """

    def __call__(
        self, config: LoggerConfig, log_dir: Path, *, run_name: str, total_steps: int | None, options: Any = ...
    ) -> Logger: ...


class AdvantageEstimator(Protocol):
    """`estimator(rewards, group, *, config) -> advantages`: how good each rollout was, relative to its prompt's others.

    Why a seam: the estimator is the part of a critic-free policy-gradient method that papers vary
    most (GRPO, RLOO, REINFORCE++, Dr. GRPO, ...), while rollouts, logprobs, the loss and the
    optimizer steps stay the same. Naming it (`grpo.advantage_estimator: rloo`) lets a recipe pick
    one, and a plugin add one, without subclassing the algorithm.

    `rewards  # [N] float`: the shaped reward of each rollout, in groups of `group` adjacent rows
    (the G samples of one prompt; N is a multiple of `group`). Returns `advantages  # [N]`, one per
    rollout, finite, in the dtype of `rewards`; GRPO broadcasts each over the rollout's tokens and
    then applies `grpo.advantage_clip_low/high`. `config` is the algorithm's own settings (GRPO's
    `GRPOConfig`), for estimators that honour shared switches such as `normalize_rewards`.
    An estimator must be a pure function of its inputs: it is called once per training step.
    """

    def __call__(self, rewards: torch.Tensor, group: int, *, config: Any) -> torch.Tensor: ...


class AdvantageEstimatorClass(Protocol):
    """`cls(options)`, or `cls()` when `grpo.advantage_estimator_cfg` is absent -> AdvantageEstimator."""

    def __call__(self, options: Any = ...) -> AdvantageEstimator: ...


@attrs.frozen
class Capabilities:
    """What a backend can do, declared when it registers (`register(..., capabilities=Capabilities(...))`).

    The executor checks a run against it before starting any worker, so that, for example, a
    training backend without data parallelism run on two training workers fails at once instead
    of training two drifting copies that write the same checkpoint. A backend that declares
    nothing is not checked, except for LoRA: with `policy.lora.enabled` only a backend that
    declared `lora=True` may run.
    """

    data_parallel: bool = False  # shards each batch over several ranks and keeps their weights identical
    tensor_parallel: bool = False  # splits layers over ranks (options.tensor_parallel_size)
    lora: bool = False  # trains low-rank adapters
    devices: tuple[str, ...] = ("cpu",)  # "cpu", "cuda"

    def check_training(self, backend: str, *, workers: int, tensor_parallel: int, gpus: bool, lora: bool = False) -> None:
        """Raise a ReinforgeError naming what `backend` cannot do in this layout (LoRA first: same message on any device)."""
        if lora:
            self.check_lora(backend)
        device = "cuda" if gpus else "cpu"
        if device not in self.devices and not (device == "cpu" and "cuda" in self.devices and cuda_emulated_on_cpu()):
            raise ReinforgeError(
                f"the training backend '{backend}' runs on {', '.join(self.devices)}, not {device}; "
                + (
                    "set cluster.gpus_per_node: 0 (ray), or hide the GPUs (CUDA_VISIBLE_DEVICES=) on the local executor"
                    if gpus
                    else "it needs an NVIDIA GPU: run on a machine with CUDA (local executor) or on GPU workers "
                    "(ray: cluster.gpus_per_node > 0)"
                )
            )
        if tensor_parallel > 1 and not self.tensor_parallel:
            raise ReinforgeError(
                f"the training backend '{backend}' has no tensor parallelism, but tensor_parallel_size is {tensor_parallel}; set it to 1"
            )
        replicas = workers // max(tensor_parallel, 1)
        if replicas > 1 and not self.data_parallel:
            raise ReinforgeError(
                f"the training backend '{backend}' has no data parallelism, but cluster.training_workers={workers} would "
                f"make {replicas} replicas, each training its own drifting copy; set cluster.training_workers="
                f"{max(tensor_parallel, 1)}, or use a backend that shards the batch (e.g. dtensor)"
            )


    def check_lora(self, backend: str) -> None:
        """Raise a ReinforgeError unless `backend` declared that it trains LoRA adapters."""
        if not self.lora:
            raise ReinforgeError(lora_refusal(backend))


def lora_refusal(backend: str) -> str:
    """Why a backend without `Capabilities(lora=True)` may not run with `policy.lora.enabled` (declared or not)."""
    return (
        f"policy.lora.enabled is true, but the training backend '{backend}' does not declare LoRA support "
        "(Capabilities(lora=True)), so it would silently train every weight; use policy.backend: dtensor, which "
        "trains adapters, or set policy.lora.enabled: false for full fine-tuning"
    )


# Set to "1" only by a test harness that routes a CUDA-only library's CUDA calls to the CPU in this
# process (tests/backends/megatron_cpu/cpu_shim.py does, for Megatron-core). Why an environment
# variable: the shim is test code the library must never import, yet the executor's device check has
# to let the shim's CPU runs through (the variable also reaches subprocesses and Ray workers), while
# a user on a CPU-only machine without it gets the device error above instead of a CUDA traceback
# from deep inside the library.
CUDA_ON_CPU_ENV = "REINFORGE_TEST_CUDA_ON_CPU"


def cuda_emulated_on_cpu() -> bool:
    """True when a test harness emulates CUDA on the CPU here, so CUDA-only backends may run on the CPU."""
    return os.environ.get(CUDA_ON_CPU_ENV) == "1"
