"""`load_config`: a recipe file plus overrides -> the typed run config of its algorithm."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from reinforge.core.config import Origins, apply_overrides, load_yaml, structure
from reinforge.core.errors import ConfigError
from reinforge.core.loop import schedule_section
from reinforge.core.registry import Registry, unknown_name_message


def algorithm_name(raw: dict[str, Any], overrides: Sequence[str], known: Sequence[str], source: str) -> str:
    """The algorithm a config is for: `algorithm:` (file or override), else the one algorithm section present."""
    for item in overrides:
        key, _, value = item.lstrip("+").partition("=")
        if key.strip() == "algorithm":
            try:
                return str(yaml.safe_load(value))
            except yaml.YAMLError:
                raise ConfigError([f"override '{item}': the value is not valid YAML @ algorithm"], source=source) from None
    if "algorithm" in raw:
        return str(raw["algorithm"])
    present = [name for name in known if name in raw]
    if len(present) == 1:
        return present[0]
    raise ConfigError(
        [
            "cannot tell which algorithm this config is for: add `algorithm: NAME` "
            f"(known: {', '.join(known)}) @ algorithm"
        ],
        source=source,
    )


def load_config(
    path: str | Path, overrides: Sequence[str] = (), registry: Registry | None = None, *, schema: type | None = None
) -> Any:
    """Read a recipe, apply dotted overrides, and structure it with its algorithm's run-config class
    (or with `schema`, for configs that are not training runs, such as evaluation)."""
    registry = registry or Registry.create()
    origins: Origins = {}
    raw = load_yaml(path, origins)
    if schema is None:
        name = algorithm_name(raw, overrides, registry.names("algorithm"), str(path))
        raw["algorithm"] = name
        run_config_cls = registry.config_class("algorithm", name)
    else:
        run_config_cls = schema
    raw = apply_overrides(raw, overrides, schema=run_config_cls, origins=origins, lookup=registry.config_class)
    config = structure(raw, run_config_cls, lookup=registry.config_class, origins=origins, source=str(path))
    _check_logger_names(config, registry, str(path))
    if schema is None and not callable(getattr(config, "loop", None)):
        schedule_section(config)  # a schedule the loop would not read fails here, not as a 100-step run
    return config


def _check_logger_names(config: Any, registry: Registry, source: str) -> None:
    """Logger names are a list, not a plugin-options selector, so check them here rather than after the model loads."""
    known = registry.names("logger")
    names = getattr(getattr(config, "logger", None), "loggers", ())
    unknown = [f"{unknown_name_message('logger', name, known)} @ logger.loggers" for name in names if name not in known]
    if unknown:
        raise ConfigError(unknown, source=source)
