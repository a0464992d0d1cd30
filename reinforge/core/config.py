"""Typed configuration: YAML with `defaults:` inheritance, dotted overrides, strict structuring.

    raw = load_yaml("recipe.yaml")                      # merged over its `defaults:` chain
    raw = apply_overrides(raw, ["policy.model_name=/ckpt", "+logger.tags=[a]"], schema=RunConfig)
    cfg = structure(raw, RunConfig, lookup=registry.config_class)

Every problem is collected and reported together, as `message @ path.to.key (from file)`,
in one `ConfigError`; nothing here lets a Python traceback reach the user.

A component chosen by name keeps its options in a field declared with `plugin_options(...)`:
the options are structured by the config class that the named plugin registered, which is
only known once plugins are loaded.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import attrs
import cattrs
import yaml

from reinforge.core.errors import ConfigError, ReinforgeError
from reinforge.core.suggest import closest

ConfigLookup = Callable[[str, str], "type | None"]  # (kind, name) -> options class
Origins = dict[tuple[str, ...], str]  # key path -> the file (or "command line") that set it

_PLUGIN_KIND = "reinforge_plugin_kind"
_PLUGIN_SELECTOR = "reinforge_plugin_selector"
_PLUGIN_MAP = "reinforge_plugin_map"


def plugin_options(kind: str, selector: str, doc: str = "") -> Any:
    """Declare a field holding the options of the plugin named by the sibling field `selector`."""
    return attrs.field(
        default=None,
        metadata={_PLUGIN_KIND: kind, _PLUGIN_SELECTOR: selector, "doc": doc},
    )


def plugin_options_map(kind: str, doc: str = "") -> Any:
    """Declare a field mapping plugin names of `kind` to their options, for sections that use several
    plugins at once (`logger.logger_cfg: {wandb: {project: demo}}`): each entry is structured with the
    options class its plugin registered, so every plugin owns its settings."""
    return attrs.field(factory=dict, metadata={_PLUGIN_MAP: kind, "doc": doc})


@attrs.frozen
class MovedKey:
    """A key a config class no longer has: where its setting lives now, and the value it used to default to.

    A class lists them as `moved_keys: ClassVar[dict[str, MovedKey]]`. The old default is accepted and
    dropped (configs saved beside checkpoints by earlier versions carry it and must still load); any
    other value is an error that names the new spelling.
    """

    new_key: str  # relative to the class's own section, e.g. "logger_cfg.wandb.project"
    old_default: Any = None


def doc(text: str, **kwargs: Any) -> Any:
    """An attrs field with a documentation string (shown by `reinforge plugins show`)."""
    metadata = dict(kwargs.pop("metadata", {}) or {})
    metadata["doc"] = text
    return attrs.field(metadata=metadata, **kwargs)


# --------------------------------------------------------------------------- YAML files
class _Loader(yaml.SafeLoader):
    """PyYAML reads YAML 1.1, where `2e-6` is a string; accept YAML 1.2 floats like every recipe writes them.

    A key written twice in one mapping is an error: PyYAML keeps the last silently, so a second `policy:`
    section would drop every setting of the first.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_line: dict[str, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            if key_node.value in first_line:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key_node.value!r} (first on line {first_line[key_node.value]})", key_node.start_mark
                )
            first_line[key_node.value] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


# Values a parsed config may hold once its aliases are expanded (recipes hold a few hundred); aliases of
# aliases ("billion laughs") expand exponentially when the config is merged and copied.
_MAX_EXPANDED_VALUES = 1_000_000


def parse_yaml(text: str) -> Any:
    """Parse YAML text (files and override values alike)."""
    value = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    if _expanded_size(value, {}) > _MAX_EXPANDED_VALUES:
        raise ValueError(
            f"it expands to more than {_MAX_EXPANDED_VALUES:,} values through nested aliases (&anchor / *alias); "
            "write the values out"
        )
    return value


def _expanded_size(value: Any, memo: dict[int, float]) -> float:
    """How many values `value` holds with every shared (aliased) part counted each time it is used."""
    if not isinstance(value, (dict, list)):
        return 1
    key = id(value)
    if key in memo:
        return memo[key]
    memo[key] = math.inf  # a structure that contains itself expands forever
    children = value.values() if isinstance(value, dict) else value
    memo[key] = 1 + sum(_expanded_size(child, memo) for child in children)
    return memo[key]


def load_yaml(path: str | Path, origins: Origins | None = None) -> dict[str, Any]:
    """Read a YAML mapping, merged over the files its `defaults:` key names (relative paths, in order)."""
    return _load_yaml(Path(path), origins if origins is not None else {}, chain=())


def _load_yaml(path: Path, origins: Origins, chain: tuple[Path, ...]) -> dict[str, Any]:
    path = path.expanduser().resolve()
    if path in chain:
        cycle = " -> ".join(str(p) for p in (*chain, path))
        raise ConfigError([f"`defaults:` inheritance loops: {cycle}"], source=str(chain[0]))
    where = f" (named in `defaults:` of {chain[-1]})" if chain else ""
    data = _parse_config_yaml(_read_config_text(path, where), path) or {}
    if not isinstance(data, dict):
        raise ConfigError([f"the top level must be a mapping, got {type(data).__name__}"], source=str(path))

    parents = data.pop("defaults", None)
    if parents is None:
        parents = []
    elif isinstance(parents, str):
        parents = [parents]
    elif not (isinstance(parents, list) and all(isinstance(p, str) for p in parents)):
        raise ConfigError(["`defaults:` must be a file name or a list of file names"], source=str(path))

    merged: dict[str, Any] = {}
    for parent in parents:
        merge_into(merged, _load_yaml(path.parent / parent, origins, (*chain, path)), origins, None)
    merge_into(merged, data, origins, str(path))
    return merged


def _read_config_text(path: Path, where: str) -> str:
    """The text of a config file; every way reading it can fail becomes one ConfigError line."""
    if path.is_dir():
        raise ConfigError([f"config path {path} is a directory, not a YAML file{where}"], source=str(path))
    if not path.exists():
        raise ConfigError([f"config file {path} does not exist{where}"], source=str(path))
    if not path.is_file():  # a device or a pipe: /dev/zero would be read forever
        raise ConfigError([f"config path {path} is not a regular file{where}"], source=str(path))
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError([f"cannot read config file {path}{where}: {exc.strerror or exc}"], source=str(path)) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            [f"config file {path}{where} is not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line}); "
             "save it as UTF-8"],
            source=str(path),
        ) from None


def _parse_config_yaml(text: str, path: Path) -> Any:
    try:
        return parse_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError([f"invalid YAML: {_yaml_problem(exc)}"], source=str(path)) from None
    except (ValueError, TypeError, RecursionError) as exc:  # e.g. a date out of range, an unhashable key
        raise ConfigError([f"invalid YAML: {type(exc).__name__}: {exc}"], source=str(path)) from None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's error as one line: what, and the line and column where (its own text spans several lines)."""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    mark = getattr(exc, "problem_mark", None)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else problem


def merge_into(
    base: dict[str, Any], update: Mapping[str, Any], origins: Origins, source: str | None, prefix: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Merge `update` into `base` key by key (mappings recursively; anything else replaces)."""
    for key, value in update.items():
        path = (*prefix, str(key))
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            merge_into(base[key], value, origins, source, path)
        else:
            base[key] = _deepcopy(value)
            if source is not None:
                for sub in _key_paths(value, path):
                    origins[sub] = source
    return base


def _key_paths(value: Any, path: tuple[str, ...]) -> list[tuple[str, ...]]:
    paths = [path]
    if isinstance(value, Mapping):
        for key, sub in value.items():
            paths += _key_paths(sub, (*path, str(key)))
    return paths


def _deepcopy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _deepcopy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deepcopy(v) for v in value]
    return value


# --------------------------------------------------------------------------- overrides
def apply_overrides(
    data: dict[str, Any],
    overrides: Sequence[str],
    *,
    schema: type | None = None,
    origins: Origins | None = None,
    lookup: ConfigLookup | None = None,
) -> dict[str, Any]:
    """Apply `a.b.c=value` (value parsed as YAML) and `+a.b.c=value` (adds a key the file lacks).

    Without `+`, the key must already be in the file or be a declared field of `schema` (with
    `lookup`, the options classes of plugins chosen by name count as declared too).
    """
    errors = []
    for item in overrides:
        add = item.startswith("+")
        key, sep, text = item[1 if add else 0 :].partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            errors.append(f"override '{item}' is not of the form key.path=value (or +key.path=value to add a key)")
            continue
        try:
            value = parse_yaml(text) if text.strip() else None
        except (yaml.YAMLError, ValueError, TypeError, RecursionError) as exc:
            errors.append(f"override '{item}': the value is not valid YAML ({exc.__class__.__name__})")
            continue
        parts = key.split(".")
        node = data
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None and (add or _schema_has(schema, parts[: depth + 1], data, lookup)):
                child = node[part] = {}
            if not isinstance(child, dict):
                errors.append(f"override '{item}': '{'.'.join(parts[: depth + 1])}' is not a mapping in the config")
                break
            node = child
        else:
            last = parts[-1]
            if not add and last not in node and not _schema_has(schema, parts, data, lookup):
                moved = _moved_key(schema, parts, lookup, data)
                if moved is not None:
                    errors.append(f"override '{item}': {moved}")
                    continue
                errors.append(
                    f"override '{item}': key '{key}' is not in the config; "
                    f"check the spelling, or write '+{key}=...' to add a new key"
                )
                continue
            node[last] = value
            if origins is not None:
                for sub in _key_paths(value, tuple(parts)):
                    origins[sub] = "command line"
    if errors:
        raise ConfigError(errors, source="command-line overrides")
    return data


def _schema_has(schema: type | None, parts: Sequence[str], data: Mapping[str, Any], lookup: ConfigLookup | None) -> bool:
    cls: Any = schema
    node: Any = data
    map_kind: str | None = None  # the previous part was a plugin-options map: this part names a plugin
    for part in parts:
        if map_kind is not None:
            try:
                cls = lookup(map_kind, part) if lookup is not None else None
            except ReinforgeError:
                return False
            map_kind = None
            node = node.get(part) if isinstance(node, Mapping) else None
            continue
        cls = _attrs_class_of(cls)
        if cls is None:
            return False
        fields = _fields(cls)
        field = fields.get(part)
        if field is None:
            return False
        if field.metadata.get(_PLUGIN_MAP) is not None:
            map_kind = field.metadata[_PLUGIN_MAP]
            node = node.get(part) if isinstance(node, Mapping) else None
            continue
        kind = field.metadata.get(_PLUGIN_KIND)
        if kind is not None:  # the options class of the plugin the sibling selector names
            selector = field.metadata[_PLUGIN_SELECTOR]
            name = node.get(selector) if isinstance(node, Mapping) and selector in node else _default_of(fields[selector])
            try:
                cls = lookup(kind, name) if lookup is not None and isinstance(name, str) else None
            except ReinforgeError:
                return False
        else:
            cls = field.type
        node = node.get(part) if isinstance(node, Mapping) else None
    return True


def _moved_key(schema: type | None, parts: Sequence[str], lookup: ConfigLookup | None, data: Mapping[str, Any]) -> str | None:
    """The moved-key message when `parts` names a key its class lists in `moved_keys`, else None."""
    if len(parts) > 1 and not _schema_has(schema, parts[:-1], data, lookup):
        return None
    cls: Any = schema
    for part in parts[:-1]:
        cls = _attrs_class_of(cls)
        field = _fields(cls).get(part) if cls is not None else None
        cls = field.type if field is not None else None
    cls = _attrs_class_of(cls)
    moved = getattr(cls, "moved_keys", {}).get(parts[-1]) if cls is not None else None
    return None if moved is None else _moved_message(parts[-1], moved, tuple(parts[:-1]))


def _moved_message(key: str, moved: MovedKey, section: tuple[str, ...]) -> str:
    new = ".".join((*section, moved.new_key))
    return f"'{key}' has moved: write {new} instead (the plugin that uses it owns that setting now)"


# --------------------------------------------------------------------------- structuring
@attrs.define
class _Problem:
    path: tuple[str, ...]
    message: str


class _Problems(Exception):
    def __init__(self, problems: list[_Problem]) -> None:
        super().__init__(problems)
        self.problems = problems


def make_converter() -> cattrs.Converter:
    """The strict converter: no silent coercion between str / int / float / bool."""
    converter = cattrs.Converter(forbid_extra_keys=True)

    def strict(kind: type, accepts: tuple[type, ...], name: str) -> None:
        def hook(value: Any, _: Any) -> Any:
            if isinstance(value, bool) and kind is not bool:
                raise ValueError(f"expected {name}, got a boolean ({value})")
            if not isinstance(value, accepts):
                raise ValueError(f"expected {name}, got {type(value).__name__} {value!r}")
            if kind is float and not math.isfinite(value):  # YAML's .nan / .inf: no setting means "unbounded" by inf
                raise ValueError(f"expected a finite number, got {value}")
            return kind(value)

        converter.register_structure_hook(kind, hook)

    strict(int, (int,), "an integer")
    strict(float, (int, float), "a number")
    strict(str, (str,), "a string")
    strict(bool, (bool,), "true or false")
    return converter


CONVERTER = make_converter()


def structure(
    data: Mapping[str, Any],
    cls: type,
    *,
    lookup: ConfigLookup | None = None,
    origins: Origins | None = None,
    source: str | None = None,
) -> Any:
    """Build an instance of the config class `cls` (attrs, or a dataclass) from `data`, reporting every problem at once."""
    try:
        return _structure_attrs(data, cls, (), lookup)
    except _Problems as exc:
        raise ConfigError([_render(p, origins or {}) for p in exc.problems], source=source) from None


def _render(problem: _Problem, origins: Origins) -> str:
    where = ".".join(problem.path) or "(top level)"
    origin = None
    for depth in range(len(problem.path), 0, -1):
        origin = origins.get(problem.path[:depth])
        if origin:
            break
    return f"{problem.message} @ {where}" + (f" (from {origin})" if origin else "")


def _structure_attrs(data: Any, cls: type, path: tuple[str, ...], lookup: ConfigLookup | None) -> Any:
    if isinstance(data, cls):
        return data
    if not isinstance(data, Mapping):
        raise _Problems([_Problem(path, f"expected a mapping of {cls.__name__} settings, got {_describe(data)}")])
    fields = _fields(cls)
    problems: list[_Problem] = []
    values: dict[str, Any] = {}
    moved_keys: Mapping[str, MovedKey] = getattr(cls, "moved_keys", {})
    for key in data:
        if key in fields:
            continue
        moved = moved_keys.get(key)
        if moved is not None:
            if data[key] != moved.old_default:
                problems.append(_Problem((*path, str(key)), _moved_message(str(key), moved, path)))
            continue  # the old default, as configs saved by earlier versions hold it: carries no setting
        close = _closest(str(key), list(fields))
        problems.append(_Problem((*path, str(key)), f"unknown key '{key}'{close}"))
    for name, field in fields.items():
        if name not in data:
            if field.default is attrs.NOTHING:
                problems.append(_Problem((*path, name), "required setting is missing"))
            continue
        value, kind = data[name], field.metadata.get(_PLUGIN_KIND)
        try:
            if kind is not None:
                continue  # plugin options are structured below, once the selector is known
            if field.metadata.get(_PLUGIN_MAP) is not None:
                values[name] = _structure_options_map(value, field.metadata[_PLUGIN_MAP], (*path, name), lookup)
                continue
            values[name] = _structure_value(value, field.type, (*path, name), lookup)
        except _Problems as exc:
            problems += exc.problems
    for name, field in fields.items():
        kind = field.metadata.get(_PLUGIN_KIND)
        if kind is None:
            continue
        selector = field.metadata[_PLUGIN_SELECTOR]
        chosen = values.get(selector, _default_of(fields[selector]))
        try:
            values[name] = _structure_plugin_options(data.get(name), kind, chosen, (*path, name), (*path, selector), lookup)
        except _Problems as exc:
            problems += exc.problems
    # Range checks of every field that structured, reported together with the other problems. A field's
    # converter runs first, as in attrs' own __init__ (e.g. top_k 0 -> None before the top_k check).
    for name, value in values.items():
        converter = fields[name].converter
        if converter is not None:
            try:
                value = values[name] = converter(value)
            except (ValueError, TypeError) as exc:
                problems.append(_Problem((*path, name), str(exc)))
                continue
        validator = fields[name].validator
        if validator is not None:
            try:
                validator(None, fields[name], value)
            except (ValueError, TypeError) as exc:
                problems.append(_Problem((*path, name), str(exc)))
    if problems:
        raise _Problems(problems)
    try:
        return cls(**values)
    except (ValueError, TypeError) as exc:  # cross-field checks in __attrs_post_init__
        raise _Problems([_Problem(path, str(exc))]) from None


def _structure_plugin_options(
    raw: Any,
    kind: str,
    name: Any,
    path: tuple[str, ...],
    selector_path: tuple[str, ...],
    lookup: ConfigLookup | None,
) -> Any:
    if lookup is None or not isinstance(name, str):
        return raw
    try:
        options_cls = lookup(kind, name)
    except ReinforgeError as exc:
        raise _Problems([_Problem(selector_path, str(exc))]) from None
    if options_cls is None:
        if raw:
            raise _Problems([_Problem(path, f"'{name}' takes no options")])
        return None
    return _structure_attrs(raw or {}, options_cls, path, lookup)


def _structure_options_map(raw: Any, kind: str, path: tuple[str, ...], lookup: ConfigLookup | None) -> dict[str, Any]:
    """`{plugin name: options}`, each entry structured with the options class of the plugin it names."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise _Problems([_Problem(path, f"expected a mapping of {kind} name -> its options, got {_describe(raw)}")])
    out: dict[str, Any] = {}
    problems: list[_Problem] = []
    for name, options in raw.items():
        where = (*path, str(name))
        if lookup is None:
            out[str(name)] = options
            continue
        try:
            options_cls = lookup(kind, str(name))
        except ReinforgeError as exc:
            problems.append(_Problem(where, str(exc)))
            continue
        if options_cls is None:
            if options:
                problems.append(_Problem(where, f"'{name}' takes no options"))
            continue
        try:
            out[str(name)] = _structure_attrs(options or {}, options_cls, where, lookup)
        except _Problems as exc:
            problems += exc.problems
    if problems:
        raise _Problems(problems)
    return out


def _structure_value(value: Any, tp: Any, path: tuple[str, ...], lookup: ConfigLookup | None) -> Any:
    inner = _attrs_class_of(tp)
    if inner is not None and not _is_optional(tp):
        return _structure_attrs(value, inner, path, lookup)
    if inner is not None and value is not None:
        return _structure_attrs(value, inner, path, lookup)
    if tp is Any:
        return value
    if typing.get_origin(tp) in (tuple, list, set, frozenset) and not isinstance(value, (list, tuple)):
        # cattrs would iterate a string into characters: `stop_strings: "</s>"` must not become ('<', '/', ...).
        raise _Problems([_Problem(path, f"expected a list, got {_describe(value)}")])
    try:
        return CONVERTER.structure(value, tp)
    except Exception as exc:  # cattrs raises many types; each is a user's wrong value here
        messages = cattrs.transform_error(exc, path="$") if isinstance(exc, cattrs.BaseValidationError) else [str(exc)]
        problems = []
        for message in messages:
            text, _, where = message.partition(" @ ")
            extra = tuple(p for p in where.removeprefix("$").replace("[", ".").replace("]", "").split(".") if p)
            text = _friendly(text, tp, value)
            problems.append(_Problem((*path, *extra), text))
        raise _Problems(problems) from None


def _literal_choices(tp: Any) -> list[Any]:
    """The allowed values of `Literal[...]`, also inside `Literal[...] | None`."""
    if typing.get_origin(tp) is Literal:
        return list(typing.get_args(tp))
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return [c for arg in typing.get_args(tp) for c in (_literal_choices(arg) if arg is not type(None) else [None])]
    return []


def _friendly(text: str, tp: Any, value: Any) -> str:
    choices = _literal_choices(tp)
    if choices and any(typing.get_origin(a) is Literal for a in (tp, *typing.get_args(tp))):
        return f"{value!r} is not one of {', '.join(repr(c) for c in choices)}"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return f"{value!r} is not one of {', '.join(repr(m.value) for m in tp)}"
    return text


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"[:80]


def _closest(name: str, known: list[str]) -> str:
    close = closest(name, known, cutoff=0.6)
    return f"; did you mean '{close}'?" if close else f"; known keys: {', '.join(known)}"


def _default_of(field: attrs.Attribute) -> Any:
    default = field.default
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        return default.factory()
    return default


def _is_optional(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in typing.get_args(tp)


def _fields(cls: type) -> dict[str, Any]:
    """The fields of a config class with their annotations resolved (modules use `from __future__ import
    annotations`): attrs' own `Attribute`s, or the same view of a dataclass's fields."""
    if dataclasses.is_dataclass(cls) and not attrs.has(cls):
        return _dataclass_fields(cls)
    attrs.resolve_types(cls)
    return attrs.fields_dict(cls)


@attrs.frozen
class _DataclassField:
    """A dataclass field as the structuring code reads an attrs field (dataclasses have no validators)."""

    name: str
    type: Any
    default: Any
    metadata: Mapping[str, Any]
    validator: Any = None
    converter: Any = None


def _dataclass_fields(cls: type) -> dict[str, _DataclassField]:
    hints = typing.get_type_hints(cls)
    out = {}
    for field in dataclasses.fields(cls):
        if not field.init:
            continue
        if field.default is not dataclasses.MISSING:
            default: Any = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = attrs.Factory(field.default_factory)
        else:
            default = attrs.NOTHING
        out[field.name] = _DataclassField(name=field.name, type=hints.get(field.name, Any), default=default, metadata=field.metadata)
    return out


def field_names(cls: type) -> list[str]:
    """The settings a config class (attrs or dataclass) takes, in declaration order."""
    return list(_fields(cls))


def is_config_class(tp: Any) -> bool:
    """Whether `tp` is a class the config layer structures: an attrs class or a dataclass."""
    return isinstance(tp, type) and (attrs.has(tp) or dataclasses.is_dataclass(tp))


def _attrs_class_of(tp: Any) -> type | None:
    """The config class (attrs or dataclass) `tp` denotes (also through `X | None`), or None."""
    if is_config_class(tp):
        return tp
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        classes = [a for a in typing.get_args(tp) if is_config_class(a)]
        if len(classes) == 1:
            return classes[0]
    return None


# --------------------------------------------------------------------------- dumping
def to_dict(config: Any) -> dict[str, Any]:
    """Plain data (dicts, lists, scalars) for YAML; `structure(to_dict(c), type(c)) == c`."""
    return CONVERTER.unstructure(config)


def dump_yaml(config: Any) -> str:
    """The resolved config as YAML (saved beside every checkpoint; `load_yaml` reads it back)."""
    return yaml.safe_dump(to_dict(config), sort_keys=False, default_flow_style=None)


# --------------------------------------------------------------------------- schema description
def describe_fields(cls: type, prefix: str = "") -> list[dict[str, str]]:
    """Every field of a config class (attrs or dataclass; a field's doc is its `metadata["doc"]`), flattened: name, type, default, doc (for `plugins show`)."""
    rows = []
    for field in _fields(cls).values():
        name = f"{prefix}{field.name}"
        inner = _attrs_class_of(field.type)
        if inner is not None:
            rows += describe_fields(inner, prefix=f"{name}.")
            continue
        default = _default_of(field)
        rows.append(
            {
                "name": name,
                "type": _type_name(field.type),
                "default": "(required)" if default is attrs.NOTHING else repr(to_dict(default) if is_config_class(type(default)) else default),
                "doc": field.metadata.get("doc", ""),
            }
        )
    return rows


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")
