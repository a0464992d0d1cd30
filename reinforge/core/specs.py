"""What to build for each part of a run: the plugin's name and its own small config.

A spec is plain data, so the executor can build the part where it runs (in this process, or
inside a Ray worker) and `import reinforge` stays light. The user-facing constructors
(`reinforge.backends.HFGeneration(...)`, `reinforge.environments.Math(...)`, ...) return specs;
`Trainer.from_config` builds the same specs from YAML sections. A spec may instead carry an
`instance` that is already built (a local object used as it is).
"""

from __future__ import annotations

from typing import Any

import attrs

from reinforge.core.config import field_names, is_config_class, structure, to_dict
from reinforge.core.errors import ConfigError
from reinforge.core.suggest import closest
from reinforge.core.interfaces import Environment, GenerationBackend, TrainingBackend
from reinforge.core.registry import Registry
from reinforge.core.run_config import EnvConfig, GenerationConfig, PolicyConfig


@attrs.define(kw_only=True, frozen=True)
class TrainingSpec:
    """The trained policy: model, batch sizes, optimizer, and the training backend (`policy.backend`) with its options."""

    policy: PolicyConfig
    instance: TrainingBackend | None = None  # already built: used instead of building `policy.backend`
    # False when the caller left policy.train_global_batch_size at its default: the run then sizes it to
    # what one step trains on (GRPO: prompts x generations), so any GRPOConfig works with the default policy.
    global_batch_size_given: bool = True


@attrs.define(kw_only=True, frozen=True)
class GenerationSpec:
    """The rollout generator: backend name and options, and the sampling settings; it generates with the policy's model."""

    generation: GenerationConfig
    instance: GenerationBackend | None = None


@attrs.define(kw_only=True, frozen=True)
class EnvironmentSpec:
    """The reward environment: plugin name and options."""

    env: EnvConfig
    instance: Environment | None = None


@attrs.define(kw_only=True, frozen=True)
class DatasetSpec:
    """Records read by a registered dataset reader (`arithmetic`, `jsonl`, ...) with its options."""

    name: str
    options: Any = None


# ------------------------------------------------------------------ keyword arguments -> specs
# The user-facing constructors split the shared settings from the plugin's own options and structure both with the
# strict config converter (unknown keys fail like unknown YAML keys).
# Settings of the policy that are not chosen by keyword: the backend's name and options, and the
# generator's settings (they come with the generation part).
_NOT_POLICY_KEYWORDS = {"model_name", "backend", "backend_cfg", "generation"}


def training_spec(backend: str, model_name: str, *, instance: Any = None, registry: Registry | None = None, **settings: Any) -> TrainingSpec:
    """`TrainingSpec` for the training backend `backend`, training `model_name`."""
    shared = {f.name for f in attrs.fields(PolicyConfig)} - _NOT_POLICY_KEYWORDS
    raw: dict[str, Any] = {"model_name": model_name, "backend": backend}
    raw.update(_plain({k: v for k, v in settings.items() if k in shared and k != "lr"}))
    if "lr" in settings:  # the one optimizer setting everybody changes
        raw["optimizer"] = {**raw.get("optimizer", {}), "lr": settings["lr"]}
    options = {k: v for k, v in settings.items() if k not in shared and k != "lr"}
    registry = _check_keywords("training_backend", backend, options, [*sorted(shared), "lr"], registry)
    if options:
        raw["backend_cfg"] = _plain(options)
    policy = structure(raw, PolicyConfig, lookup=_lookup(registry, options), source=f"training backend '{backend}'")
    return TrainingSpec(policy=policy, instance=instance, global_batch_size_given="train_global_batch_size" in settings)


def generation_spec(backend: str, *, instance: Any = None, registry: Registry | None = None, **settings: Any) -> GenerationSpec:
    """`GenerationSpec` for the generation backend `backend` (sampling settings and the backend's options)."""
    shared = {f.name for f in attrs.fields(GenerationConfig)} - {"backend", "backend_cfg"}
    raw: dict[str, Any] = {"backend": backend, **_plain({k: v for k, v in settings.items() if k in shared})}
    options = {k: v for k, v in settings.items() if k not in shared}
    registry = _check_keywords("generation_backend", backend, options, sorted(shared), registry)
    if options:
        raw["backend_cfg"] = _plain(options)
    generation = structure(raw, GenerationConfig, lookup=_lookup(registry, options), source=f"generation backend '{backend}'")
    return GenerationSpec(generation=generation, instance=instance)


def plugin_config(kind: str, name: str, options: dict[str, Any], registry: Registry | None = None) -> Any:
    """The options of plugin `name` as its registered config class (None when there are none: plugin defaults)."""
    if not options:
        return None
    registry = registry or Registry.create()
    cls = registry.config_class(kind, name)
    if cls is None:
        from reinforge.core.errors import ReinforgeError

        raise ReinforgeError(f"the {kind.replace('_', ' ')} '{name}' takes no options; got {sorted(options)}")
    return structure(_plain(options), cls, lookup=registry.config_class, source=f"{kind.replace('_', ' ')} '{name}'")


def _check_keywords(kind: str, backend: str, options: dict[str, Any], shared: list[str], registry: Registry | None) -> Registry | None:
    """Keywords that are neither shared settings nor the backend's options fail here, with the closest of both
    as the suggestion (a misspelt `max_new_tokens` must not be matched against the backend's options only)."""
    if not options:
        return registry
    registry = registry or Registry.create()
    config_class = registry.config_class(kind, backend)
    own = field_names(config_class) if config_class is not None else []
    unknown = [key for key in options if key not in own]
    if not unknown:
        return registry
    what = kind.replace("_", " ")
    section = "sampling settings" if kind == "generation_backend" else "policy settings"
    known = f"{section}: {', '.join(shared)}; " + (f"options of '{backend}': {', '.join(own)}" if own else f"'{backend}' takes no options")
    lines = []
    for key in unknown:
        close = closest(key, [*shared, *own])
        lines.append(f"unknown key '{key}'{f'; did you mean {close!r}?' if close else ''} ({known}) @ {key}")
    raise ConfigError(lines, source=f"{what} '{backend}'")


def _lookup(registry: Registry | None, options: dict[str, Any]) -> Any:
    # The plugin's config class is looked up only when it has options (building a registry reads entry points).
    if not options:
        return None
    return (registry or Registry.create()).config_class


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    """Config instances (e.g. optimizer=OptimizerConfig(...), a plugin's dataclass) as the mappings the converter structures."""
    return {k: to_dict(v) if is_config_class(type(v)) else v for k, v in values.items()}
