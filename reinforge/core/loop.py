"""`LoopConfig`: the schedule the `Trainer` owns — how many steps, when to validate and save, the seed.

Why here and not in each algorithm: every algorithm used to re-declare the same schedule keys
(`grpo.max_num_steps`, `sft.val_period`, ...) and hand them to the loop through properties. The
loop is the one reader of the schedule, so it owns it; YAML recipes keep their keys, which
`Trainer.from_config` maps in (`loop_from_run_config`).
"""

from __future__ import annotations

from typing import Any, Literal

import attrs
from attrs import validators as v

from reinforge.core.config import doc
from reinforge.core.errors import ReinforgeError
from reinforge.core.run_config import CheckpointingConfig, PolicyConfig, check_seed

_optional_positive = v.optional(v.gt(0))


@attrs.define(kw_only=True, frozen=True)
class LoopConfig:
    max_steps: int = doc("training steps", default=100, validator=v.gt(0))
    prompts_per_step: int | None = doc(
        "records one step consumes (null = what the algorithm asks for: GRPO's num_prompts_per_step, "
        "SFT/DPO's policy.train_global_batch_size)",
        default=None,
        validator=_optional_positive,
    )
    val_period: int = doc("validate every N steps (0 = never)", default=0, validator=v.ge(0))
    val_at_start: bool = doc("validate before the first step", default=False)
    val_at_end: bool = doc("validate after the last step (when there is validation data)", default=True)
    seed: int = doc("seed for data order, sampling and initialisation", default=42, validator=check_seed)
    shuffle: bool = doc("reshuffle the training records every epoch", default=True)
    checkpoint_dir: str | None = doc("where step_N/ checkpoint folders go (null = no checkpoints)", default=None)
    save_period: int = doc("save every N steps (and after the last)", default=10, validator=v.gt(0))
    keep_top_k: int | None = doc("keep the best k checkpoints by metric_name (null = all)", default=None, validator=_optional_positive)
    metric_name: str | None = doc("metric ranking checkpoints, e.g. val:accuracy (null = keep the latest)", default=None)
    higher_is_better: bool = doc("whether a larger metric is better", default=True)
    resume: Literal[True, False, "force"] = doc(
        "true: resume from the newest intact step in checkpoint_dir; false: start over; force: resume even from "
        "another run's checkpoint",
        default=True,
    )
    save_before_minutes: float | None = doc(
        "wall-clock budget in minutes: save and stop (exit 0) before it ends (null = no budget)",
        default=None,
        validator=_optional_positive,
    )

    def checkpointing(self) -> CheckpointingConfig:
        """The checkpoint manager's settings (disabled when there is no checkpoint_dir)."""
        return CheckpointingConfig(
            enabled=self.checkpoint_dir is not None,
            checkpoint_dir=self.checkpoint_dir or "results/checkpoints",
            save_period=self.save_period,
            keep_top_k=self.keep_top_k,
            metric_name=self.metric_name,
            higher_is_better=self.higher_is_better,
            resume=self.resume,
            save_before_minutes=self.save_before_minutes,
        )


@attrs.define(kw_only=True, frozen=True)
class ComposedRunConfig:
    """What a run composed in Python writes as its checkpoints' config.yaml (a YAML recipe writes itself):
    enough for `reinforge convert` (the policy) and to see the schedule."""

    policy: PolicyConfig = doc("the trained policy and its generator")
    loop: LoopConfig = doc("the schedule", factory=LoopConfig)


_SCHEDULE_KEYS = {
    "max_steps": "max_num_steps",
    "val_period": "val_period",
    "val_at_start": "val_at_start",
    "val_at_end": "val_at_end",
    "seed": "seed",
}


def schedule_section_name(run_config_class: type, algorithm: str) -> str:
    """The schedule section's name, unchecked: the class's `schedule_section`, else the algorithm's name."""
    return getattr(run_config_class, "schedule_section", None) or algorithm


def schedule_section(config: Any) -> str:
    """The section of a run config the loop reads the schedule from, checked.

    The run-config class names it (`schedule_section: ClassVar[str] = "grpo"`), so every algorithm
    registered with `run_config="grpo"` reads `grpo:`; a class that does not name one keeps the old
    rule, a section named like `config.algorithm`. A section that is missing, or another section
    holding schedule keys that the loop would not read, is an error: a schedule must never be
    dropped in silence (a run would train for the default 100 steps).
    """
    cls, algorithm = type(config), str(getattr(config, "algorithm", ""))
    name = schedule_section_name(cls, algorithm)
    fields = {field.name for field in attrs.fields(cls)} if attrs.has(cls) else set(vars(config))
    schedule_like = sorted(
        field for field in fields if any(hasattr(getattr(config, field, None), key) for key in _SCHEDULE_KEYS.values() if key != "seed")
    )
    if name not in fields:
        found = f"; its schedule keys are in `{schedule_like[0]}:`" if schedule_like else ""
        raise ReinforgeError(
            f"algorithm '{algorithm}': its run config {cls.__qualname__} has no `{name}:` section to read the schedule "
            f"(max_num_steps, val_period, ...) from{found}. Register the algorithm with the run config it takes "
            f"(register('{algorithm}', ..., run_config='grpo')), or give {cls.__qualname__} "
            "`schedule_section: ClassVar[str] = 'SECTION'` or a `loop()` method"
        )
    unread = [field for field in schedule_like if field != name]
    if unread:
        raise ReinforgeError(
            f"algorithm '{algorithm}': the `{unread[0]}:` section of {cls.__qualname__} holds schedule keys "
            f"(max_num_steps, val_period, ...) that nothing reads: the loop reads the schedule from `{name}:`. Move "
            f"the keys there, or set schedule_section = '{unread[0]}' on the class"
        )
    return name


def loop_from_run_config(config: Any, *, prompts_per_step: int | None = None) -> LoopConfig:
    """The loop of a YAML run config: the schedule keys of its schedule section (`grpo:`, `sft:`, ... — see
    `schedule_section`), `data.shuffle` and the `checkpointing:` section.

    A run config may define `loop()` itself; otherwise its schedule section may hold the standard keys
    `max_num_steps`, `val_period`, `val_at_start`, `val_at_end` and `seed` (absent ones keep LoopConfig's defaults).
    """
    own = getattr(config, "loop", None)
    if callable(own):
        return own()
    section = getattr(config, schedule_section(config))
    schedule = {key: getattr(section, name) for key, name in _SCHEDULE_KEYS.items() if hasattr(section, name)}
    ckpt: CheckpointingConfig = config.checkpointing
    data = getattr(config, "data", None)
    return LoopConfig(
        **schedule,
        prompts_per_step=prompts_per_step,
        shuffle=bool(getattr(data, "shuffle", True)),
        checkpoint_dir=ckpt.checkpoint_dir if ckpt.enabled else None,
        save_period=ckpt.save_period,
        keep_top_k=ckpt.keep_top_k,
        metric_name=ckpt.metric_name,
        higher_is_better=ckpt.higher_is_better,
        resume=ckpt.resume,
        save_before_minutes=ckpt.save_before_minutes,
    )
