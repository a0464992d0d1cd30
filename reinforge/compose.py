"""Build what a run needs from its parts' specs: tokenizer, data, backends, environment, loggers.

`reinforge.Trainer` calls `build_run_parts`; evaluation reuses the tokenizer and prompt helpers.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from reinforge.core.env_guard import guard_environment
from reinforge.core.errors import ReinforgeError, read_user_text
from reinforge.core.interfaces import Algorithm, Logger
from reinforge.core.loop import LoopConfig
from reinforge.core.model_config import ModelConfig
from reinforge.core.model_folder import check_model_folder, tokenizer_setting
from reinforge.core.registry import Registry
from reinforge.core.run import RunParts
from reinforge.core.run_config import (
    ClusterConfig,
    DataConfig,
    GenerationConfig,
    LoggerConfig,
    PolicyConfig,
    async_grpo_cluster_refusal,
)
from reinforge.core.specs import DatasetSpec, EnvironmentSpec, GenerationSpec, TrainingSpec
from reinforge.core.timer import Timer
from reinforge.data.loader import PromptLoader
from reinforge.rollouts.async_service import AsyncRolloutService
from reinforge.rollouts.service import RolloutService
from reinforge.data.preparation import prepare_records
from reinforge.data.prompts import build_prompt_set, ensure_chat_template, report_overlong
from reinforge.data.startup_checks import check_column_types, check_sequence_limits


def load_tokenizer(model: ModelConfig, *, setting: str = "policy.model_name") -> Any:
    from transformers import AutoTokenizer

    check_model_folder(model.model_name, setting=setting, tokenizer_folder=model.tokenizer_name)
    name = model.tokenizer_folder
    tokenizer_key = tokenizer_setting(setting)  # policy.tokenizer_name, or eval's generation.tokenizer_name
    if name.startswith(("/", ".", "~")) and not Path(name).expanduser().exists():
        if model.tokenizer_name:
            raise ReinforgeError(
                f"tokenizer folder '{name}' does not exist; check {tokenizer_key} (or leave it unset to read the "
                f"tokenizer from {setting})"
            )
        raise ReinforgeError(
            f"model folder '{name}' does not exist; check {setting}, "
            "e.g. the hf/ folder that `reinforge convert` wrote for the previous stage"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
    except OSError as exc:
        raise ReinforgeError(
            f"cannot load the tokenizer from '{name}' ({exc.__class__.__name__}: {str(exc).splitlines()[0]}); "
            f"point {setting} (or {tokenizer_key}) at a Hugging Face model folder"
        ) from None
    apply_chat_template_option(tokenizer, model.chat_template)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def apply_chat_template_option(tokenizer: Any, option: str | None) -> None:
    """Give `tokenizer` the chat template `policy.chat_template` asks for (see PolicyConfig)."""
    if option is None or option == "default":
        ensure_chat_template(tokenizer, use_default=option == "default")
        return
    path = Path(option).expanduser()
    if not path.is_file():
        raise ReinforgeError(
            f"policy.chat_template: {option!r} is neither null, 'default', nor an existing file (looked for "
            f"{path.resolve()}); give the path to a Jinja chat-template file, 'default' for ChatML, or null to keep "
            "the tokenizer's own template"
        )
    tokenizer.chat_template = read_user_text(path, "policy.chat_template file")


def load_dataset_records(registry: Registry, name: str | None, options: Any) -> list[dict[str, Any]]:
    if name is None:
        return []
    reader = registry.dataset(name)
    return list(reader(options) if options is not None else reader())


__all__ = ["apply_chat_template_option", "build_prompt_set", "build_run_parts", "load_dataset_records", "load_tokenizer", "read_records"]


def _prepare(
    algorithm: Algorithm, records: list[dict[str, Any]], tokenizer: Any, *, data: DataConfig, policy: Any, source: str
) -> tuple[list[Any], dict[str, Any]]:
    """The algorithm's items: made by `reinforge.data` from its `record_format`, or by its own `prepare_data` hook."""
    own = getattr(algorithm, "prepare_data", None)  # the optional hook (see the Algorithm protocol)
    if own is not None:
        return own(records, tokenizer, data=data, policy=policy, source=source)
    return prepare_records(algorithm.record_format, records, tokenizer, data=data, model=policy.model, source=source)


def run_name(log_dir: str) -> str:
    """The run's name for progress bars and trackers: the log folder's, or its parent's for the usual `<run>/logs`."""
    path = Path(log_dir)
    return path.parent.name if path.name == "logs" and path.parent.name else path.name


def quiet_library_progress_bars() -> None:
    """Turn off the loading/download bars of transformers, datasets and the hub, which would interleave with ours."""
    import os

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
    except ImportError:
        pass
    try:
        import datasets

        datasets.disable_progress_bars()
    except ImportError:
        pass


_ACCEPTED = (
    "a list of dicts (one per row), a dict of equal-length columns, a datasets.Dataset or a DatasetSpec; e.g. "
    "train_data=[{'problem': 'What is 2 + 3?', 'answer': '5'}, ...] or {'problem': [...], 'answer': [...]}"
)


def read_records(data: Any, registry: Registry, *, argument: str = "train_data") -> tuple[list[dict[str, Any]], str]:
    """Records from a list of dicts, a dict of equal-length columns (as `datasets.Dataset.from_dict` takes), a
    Hugging Face `datasets.Dataset` (any iterable of mappings) or a `DatasetSpec` naming a registered reader;
    returns them and a name for messages. `argument` names the data in errors (train_data, val_data)."""
    if isinstance(data, DatasetSpec):
        return load_dataset_records(registry, data.name, data.options), f"dataset {data.name!r}"
    if isinstance(data, Mapping):
        return _columns_to_rows(data, argument), f"the columns passed as {argument}"
    if isinstance(data, (str, bytes)) or not isinstance(data, Iterable):
        raise ReinforgeError(f"{argument} must be {_ACCEPTED}; got {type(data).__name__}")
    records = []
    for row, record in enumerate(data):
        if not isinstance(record, Mapping):
            raise ReinforgeError(f"{argument} row {row} is a {type(record).__name__}, not a dict; {argument} must be {_ACCEPTED}")
        records.append(dict(record))
    return records, "the data passed in"


def _columns_to_rows(columns: Mapping[Any, Any], argument: str) -> list[dict[str, Any]]:
    """{'problem': [...], 'answer': [...]} -> one dict per row; every column a list (or array) of one length."""
    values = {}
    for name, column in columns.items():
        if hasattr(column, "tolist") and not isinstance(column, (str, bytes)):
            column = column.tolist()  # numpy arrays, pandas Series
        if not isinstance(column, (list, tuple)):
            raise ReinforgeError(
                f"{argument} is a dict, read as columns, but its '{name}' is a {type(column).__name__}, not a list; "
                f"{argument} must be {_ACCEPTED}"
            )
        values[str(name)] = list(column)
    lengths = {name: len(column) for name, column in values.items()}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"'{name}': {n}" for name, n in lengths.items())
        raise ReinforgeError(f"{argument} is a dict of columns of different lengths ({shown}); every column needs one value per row")
    count = next(iter(lengths.values()), 0)
    return [{name: column[i] for name, column in values.items()} for i in range(count)]


def build_run_parts(
    *,
    algorithm: Algorithm,
    policy: TrainingSpec,
    generation: GenerationSpec | None,
    environment: EnvironmentSpec | None,
    train_data: Any,
    val_data: Any,
    loop: LoopConfig,
    data: DataConfig,
    loggers: LoggerConfig,
    extra_loggers: Sequence[Logger],
    cluster: ClusterConfig,
    registry: Registry,
    config: Any = None,
) -> RunParts:
    """Build every part a run needs, in a fixed order (so a seeded run is reproducible): executor,
    tokenizer, data, loader, training backend, generator, environment, loggers."""
    from reinforge.executors.local import make_executor
    from reinforge.loggers import MultiLogger

    _check_algorithm_members(algorithm)
    policy_config = _sized_policy(policy, algorithm, loop)  # the training side: batch sizes, optimizer, backend options
    model = policy_config.model  # what both backends load
    if generation is None and algorithm.needs_generation:
        generation = GenerationSpec(generation=GenerationConfig())  # hf, the embedded default, on the policy's model
    generation_config = generation.generation if generation is not None else None  # the generator's: engine, sampling
    if "console" in loggers.loggers:
        quiet_library_progress_bars()  # one progress bar: the run's, not each library's loading bars
    if algorithm.async_rollouts_max_age is not None and (refusal := async_grpo_cluster_refusal(cluster)):
        raise ReinforgeError(refusal)  # runs built in Python: config load refused it already (GRPORunConfig)
    tokenizer = load_tokenizer(model)
    prepared = []
    for part, split, argument in ((train_data, "training", "train_data"), (val_data, "validation", "val_data")):
        if part is None:
            prepared.append(([], {}))
            continue
        records, source = read_records(part, registry, argument=argument)
        check_column_types(records, source=source, split=split)
        prepared.append(_prepare(algorithm, records, tokenizer, data=data, policy=policy_config, source=source))
    (train_prompts, train_stats), (val_prompts, val_stats) = prepared
    if "prompts" in train_stats:  # RL prompts: the response must fit after the prompt
        lengths = [len(p["input_ids"]) for p in train_prompts if isinstance(p, dict) and "input_ids" in p]
        check_sequence_limits(data.max_input_seq_length, policy_config.max_total_sequence_length, lengths)
    for split, stats in (("training", train_stats), ("validation", val_stats)):
        # RL prompts (build_prompts' stats count "prompts") are limited by the prompt length; whole examples
        # (SFT conversations, DPO pairs) by the sequence length.
        prompts_only = "prompts" in stats
        limit = (
            f"data.max_input_seq_length={data.max_input_seq_length}"
            if prompts_only
            else f"policy.max_total_sequence_length={policy_config.max_total_sequence_length}"
        )
        noun = "prompts" if prompts_only else "examples"
        report_overlong(stats, split=split, limit=limit, max_dropped_share=data.max_dropped_share, noun=noun)
    if not train_prompts:
        name = train_data.name if isinstance(train_data, DatasetSpec) else "passed in"
        raise ReinforgeError(
            f"no training data: the dataset '{name}' was empty or every example was dropped as too "
            "long; check data.dataset_cfg and data.max_input_seq_length"
        )
    per_step = loop.prompts_per_step or algorithm.records_per_step(policy_config)
    loader = PromptLoader(train_prompts, per_step, seed=loop.seed, shuffle=loop.shuffle)

    if algorithm.needs_environment and environment is None:
        raise ReinforgeError(
            f"{type(algorithm).__name__} needs rewards but no environment was given; pass environment= a "
            "reward function (prompt, response, **metadata) -> float, or reinforge.environments.Math(...)"
        )
    # The executor starts only now that the data is read (a Ray executor starts a cluster), and what it built is
    # shut down again if a later part fails: a failed build in a notebook or a test leaves no cluster behind.
    executor = make_executor(cluster, registry)
    built: list[Any] = []  # the parts built here (not the caller's instances), for the clean-up
    try:
        need_reference = algorithm.needs_reference
        built_policy = policy.instance or _owned(built, executor.training(policy_config, need_reference=need_reference, seed=loop.seed))
        built_generation = None
        if generation is not None and algorithm.needs_generation:
            built_generation = generation.instance or _owned(built, executor.generation(model, generation_config, seed=loop.seed))
        built_environment = None
        if algorithm.needs_environment:
            assert environment is not None  # checked before the executor started
            built_environment = environment.instance or _owned(built, executor.environment(environment.env))
            # Deadlines and a failure budget around every call, for plugins and plain reward functions alike.
            built_environment = guard_environment(built_environment, name=environment.env.name, config=environment.env.guard)
    except BaseException:
        for part in [*reversed(built), executor]:
            with contextlib.suppress(Exception):  # the build's own error is the one to report
                part.shutdown()
        raise
    timer = Timer()
    rollouts = None
    if built_generation is not None and built_environment is not None:
        options = {"max_total_length": policy_config.max_total_sequence_length, "timer": timer, "tools": data.tools}
        if algorithm.async_rollouts_max_age is None:
            rollouts = RolloutService(built_generation, built_environment, tokenizer, **options)
        else:  # a producer thread generates the next steps while one trains (asynchronous GRPO)
            rollouts = AsyncRolloutService(built_generation, built_environment, tokenizer, **options)
    logger = MultiLogger.from_config(loggers, registry, run_name=run_name(loggers.log_dir), total_steps=loop.max_steps)
    logger.loggers.extend(extra_loggers)
    return RunParts(
        config=config,
        registry=registry,
        tokenizer=tokenizer,
        policy=built_policy,
        policy_config=policy_config,
        generation_config=generation_config,
        generation=built_generation,
        environment=built_environment,
        train_prompts=train_prompts,
        val_prompts=val_prompts,
        loader=loader,
        logger=logger,
        timer=timer,
        executor=executor,
        loop=loop,
        rollouts=rollouts,
        prompt_stats={"train": train_stats, "validation": val_stats},
        data=data,
    )


# The Algorithm protocol's data members, read before anything is built. A plugin written against an older
# reinforge lacks the newer ones (async_rollouts_max_age came with asynchronous GRPO): say which, not AttributeError.
_ALGORITHM_MEMBERS = {
    "needs_generation": "True when it needs rollouts",
    "needs_environment": "True when it needs rewards",
    "needs_reference": "True when the backend keeps a frozen reference policy",
    "async_rollouts_max_age": "None for synchronous rollouts",
}


def _check_algorithm_members(algorithm: Any) -> None:
    missing = [name for name in _ALGORITHM_MEMBERS if not hasattr(algorithm, name)]
    if not hasattr(algorithm, "record_format") and not hasattr(algorithm, "prepare_data"):  # one of the two makes its items
        missing.append("record_format")
    if missing:
        meaning = {**_ALGORITHM_MEMBERS, "record_format": "what train_step receives (reinforge.core.records.RecordFormat), "
                   "unless a prepare_data hook makes the items"}
        wanted = "; ".join(f"{name} ({meaning[name]})" for name in missing)
        raise ReinforgeError(
            f"The algorithm {type(algorithm).__module__}.{type(algorithm).__qualname__} lacks members of reinforge's "
            f"Algorithm protocol (reinforge.core.interfaces.Algorithm): {wanted}. Add them to the class, e.g. "
            "`async_rollouts_max_age = None` for an algorithm without asynchronous rollouts."
        )


def _owned(built: list[Any], part: Any) -> Any:
    """`part`, noted in `built` (what build_run_parts shuts down if a later part fails)."""
    built.append(part)
    return part


def _sized_policy(policy: TrainingSpec, algorithm: Algorithm, loop: LoopConfig) -> PolicyConfig:
    """The policy's config, with `train_global_batch_size` set to what one step trains on when the caller left it
    unset and the algorithm says (`samples_per_step`, GRPO: prompts x generations); the microbatch is reduced to a
    divisor of it when it is not one already."""
    config = policy.policy
    samples_per_step = getattr(algorithm, "samples_per_step", None)  # optional: algorithms whose rows outnumber records
    if policy.global_batch_size_given or samples_per_step is None:
        return config
    rows = int(samples_per_step(loop.prompts_per_step or algorithm.records_per_step(config)))
    return attrs.evolve(config, train_global_batch_size=rows, train_micro_batch_size=math.gcd(rows, config.train_micro_batch_size))
