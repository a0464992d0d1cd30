"""Build what a run needs from its config: tokenizer, prompts, backends, environment, loggers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

from reinforge.core.env_guard import guard_environment
from reinforge.core.errors import ReinforgeError, read_user_text
from reinforge.core.model_folder import check_model_folder
from reinforge.core.interfaces import Environment, GenerationBackend, TrainingBackend
from reinforge.core.registry import Registry
from reinforge.core.timer import Timer
from reinforge.data.loader import PromptLoader
from reinforge.data.prompts import PromptConfig, build_prompts, ensure_chat_template, report_overlong


@attrs.define
class RunParts:
    """Everything an algorithm drives during a run (built once, shared by train_step and validate)."""

    config: Any
    tokenizer: Any
    policy: TrainingBackend
    generation: GenerationBackend | None
    environment: Environment | None
    train_prompts: list[dict[str, Any]]
    val_prompts: list[dict[str, Any]]
    loader: PromptLoader
    logger: Any  # reinforge.loggers.MultiLogger
    timer: Timer
    executor: Any
    prompt_stats: dict[str, Any] = attrs.field(factory=dict)

    def shutdown(self) -> None:
        for part in (self.generation, self.environment, self.policy):
            if part is not None:
                part.shutdown()
        self.executor.shutdown()
        self.logger.close()


def load_tokenizer(policy: Any, *, setting: str = "policy.model_name") -> Any:
    from transformers import AutoTokenizer

    check_model_folder(policy.model_name, setting=setting, tokenizer_folder=policy.tokenizer_name)
    name = policy.tokenizer_name or policy.model_name
    if name.startswith(("/", ".", "~")) and not Path(name).expanduser().exists():
        raise ReinforgeError(
            f"model folder '{name}' does not exist; check {setting} (or policy.tokenizer_name), "
            "e.g. the hf/ folder that `reinforge convert` wrote for the previous stage"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
    except OSError as exc:
        raise ReinforgeError(
            f"cannot load the tokenizer from '{name}' ({exc.__class__.__name__}: {str(exc).splitlines()[0]}); "
            f"point {setting} (or policy.tokenizer_name) at a Hugging Face model folder"
        ) from None
    apply_chat_template_option(tokenizer, getattr(policy, "chat_template", None))
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
    reader = registry.resolve("dataset", name)
    return list(reader(options) if options is not None else reader())


def build_prompt_set(config: Any, tokenizer: Any, records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    data = config.data
    prompt_config = PromptConfig(
        prompt_file=data.prompt_file,
        system_prompt=data.system_prompt,
        example_turns=data.example_turns,
        max_prompt_length=data.max_input_seq_length,
        on_overlong=data.on_overlong_prompt,
    )
    prompts, stats = build_prompts(records, tokenizer, prompt_config)
    return prompts, dict(attrs.asdict(stats) if attrs.has(type(stats)) else stats)


def build_run_parts(
    config: Any,
    registry: Registry,
    *,
    algorithm: Any,
    seed: int,
    prompts_per_step: int,
    overrides: dict[str, Any] | None = None,
) -> RunParts:
    """Build every part, taking objects from `overrides` (policy, generation, environment) where given."""
    from reinforge.core.cluster import make_executor
    from reinforge.loggers import MultiLogger

    overrides = overrides or {}
    executor = make_executor(config.cluster, registry)
    tokenizer = load_tokenizer(config.policy)
    prepare = getattr(algorithm, "prepare_data", None)
    if prepare is not None:  # algorithms with their own data shape (SFT conversations, DPO pairs)
        train_prompts, val_prompts, stats = prepare(config, tokenizer, registry)
        train_stats, val_stats = stats.get("train", {}), stats.get("validation", {})
    else:
        train_records = load_dataset_records(registry, config.data.dataset, config.data.dataset_cfg)
        val_records = load_dataset_records(registry, config.data.val_dataset, config.data.val_dataset_cfg)
        train_prompts, train_stats = build_prompt_set(config, tokenizer, train_records)
        val_prompts, val_stats = build_prompt_set(config, tokenizer, val_records) if val_records else ([], {})
    limit = (
        f"policy.max_total_sequence_length={config.policy.max_total_sequence_length}"
        if prepare is not None
        else f"data.max_input_seq_length={config.data.max_input_seq_length}"
    )
    for split, stats in (("training", train_stats), ("validation", val_stats)):
        noun = "prompts" if prepare is None else "examples"
        report_overlong(stats, split=split, limit=limit, max_dropped_share=config.data.max_dropped_share, noun=noun)
    if not train_prompts:
        raise ReinforgeError(
            f"no training data: the dataset '{config.data.dataset}' was empty or every example was dropped as too "
            "long; check data.dataset_cfg and data.max_input_seq_length"
        )
    loader = PromptLoader(train_prompts, prompts_per_step, seed=seed, shuffle=config.data.shuffle)

    need_reference = bool(getattr(algorithm, "needs_reference", False))
    policy = overrides.get("policy") or executor.training(config.policy, need_reference=need_reference, seed=seed)
    generation = None
    if getattr(algorithm, "needs_generation", False):
        generation = overrides.get("generation") or executor.generation(config.policy, seed=seed)
    environment = None
    if getattr(algorithm, "needs_environment", False):
        environment = overrides.get("environment") or executor.environment(config.env)
        environment = guard_environment(environment, name=config.env.name, config=config.env.guard)
    logger = MultiLogger.from_config(config.logger, registry, run_name=Path(config.logger.log_dir).name)
    return RunParts(
        config=config,
        tokenizer=tokenizer,
        policy=policy,
        generation=generation,
        environment=environment,
        train_prompts=train_prompts,
        val_prompts=val_prompts,
        loader=loader,
        logger=logger,
        timer=Timer(),
        executor=executor,
        prompt_stats={"train": train_stats, "validation": val_stats},
    )
