"""`reinforge plugins list|show|check`: what is installed, where it came from, what it takes, whether it conforms."""

from __future__ import annotations

import argparse
from typing import Any

import attrs
from rich.markup import escape
from rich.table import Table

from reinforge.cli.output import console, print_json
from reinforge.cli.plugins_check_cmd import add_check_parser
from reinforge.cli.plugins_trust_cmd import add_trust_parser, untrusted_records
from reinforge.core.config import describe_fields
from reinforge.core.errors import PluginError
from reinforge.core.registry import KINDS, PluginSpec, Registry, unknown_name_message


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("plugins", help="list and describe plugins")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="every plugin: kind, name, source, availability")
    listing.add_argument("--kind", choices=list(KINDS), help="only this kind")
    listing.add_argument("--all", action="store_true", help="also show plugin modules and blocked names")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(run=run_list)
    show = actions.add_parser("show", help="a plugin's config schema: every field, type, default, doc")
    show.add_argument("name")
    show.add_argument("--kind", choices=list(KINDS), help="needed when several kinds share the name")
    show.add_argument("--json", action="store_true")
    show.set_defaults(run=run_show)
    add_check_parser(actions)
    add_trust_parser(actions)


def spec_record(spec: PluginSpec) -> dict[str, Any]:
    missing = spec.missing_requirements()
    return {
        "kind": spec.kind,
        "name": spec.name,
        "source": str(spec.source),
        "origin": spec.source.origin,
        "module": spec.source.module,
        "available": not missing,
        "missing": missing,
        "install": spec.install_hint() if missing else None,
        "description": spec.description,
        "implementation": spec.implementation if isinstance(spec.implementation, str) else repr(spec.implementation),
        "capabilities": attrs.asdict(spec.capabilities) if spec.capabilities is not None else None,
    }


def capability_summary(record: dict[str, Any]) -> str:
    """A backend's declared capabilities in words ('' when it declared none), e.g. 'LoRA, data parallel; cpu, cuda'."""
    declared = record.get("capabilities")
    if declared is None:
        return ""
    words = {"lora": "LoRA", "data_parallel": "data parallel", "tensor_parallel": "tensor parallel"}
    can = [word for key, word in words.items() if declared.get(key)]
    return f"{', '.join(can) or 'single process, full fine-tuning only'}; {', '.join(declared.get('devices', ()))}"


def run_list(args: argparse.Namespace) -> int:
    registry = Registry.create(project_file=args.plugins, untrusted="skip")  # an untrusted file is shown, not imported
    records = [spec_record(s) for s in registry.specs(args.kind)]
    failures = [{"module": f.source.module, "source": str(f.source), "error": f.error} for f in registry.load_failures]
    project, untrusted = registry.settings.project_file, registry.untrusted_project_file
    if args.json:
        print_json({"plugins": records, "load_failures": failures, "project_file": project, "untrusted": untrusted_records(untrusted)})
        return 0
    # Local plugins run code from that folder: always say which file (or that none) was loaded.
    if untrusted:
        console.print(f"project plugins: {escape(untrusted)} [yellow](untrusted: not loaded; `reinforge plugins trust` loads it)[/]")
    else:
        console.print(f"project plugins: {escape(project)}" if project else "project plugins: none (no plugins.toml here or named by --plugins)")
    table = Table(title="reinforge plugins", title_justify="left")
    table.add_column("kind", min_width=11)  # wraps between its words ("advantage / estimator"), never cut off
    for column in ("name", "source", "status"):
        table.add_column(column, no_wrap=True)
    table.add_column("description", overflow="fold")
    for r in records:
        status = "[green]available[/]" if r["available"] else f"[yellow]needs: {escape(r['install'])}[/]"
        summary = capability_summary(r)
        description = f"{r['description']} [can: {summary}]" if summary else r["description"]
        table.add_row(r["kind"].replace("_", " "), r["name"], escape(r["source"]), status, escape(description))
    for u in untrusted_records(untrusted):  # what it registers is unknown until its code runs
        table.add_row("local module", escape(u["module"]), escape(f"local {u['file'] or u['module']}"), "[red]untrusted[/]", "not imported")
    console.print(table)
    if args.all:
        modules = sorted(name for name, plugin in registry.plugin_manager.list_name_plugin() if plugin is not None)
        console.print("plugin modules: " + escape(", ".join(modules)))
        console.print("blocked: " + escape(", ".join(sorted(registry.blocked_names)) or "(none)"))
    for f in failures:
        console.print(f"[red]failed to load plugin {escape(f['source'])}:[/] {escape(f['error'])}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    registry = Registry.create(project_file=args.plugins)
    if args.kind:
        specs = [registry.get(args.kind, args.name)]
    else:
        specs = registry.find(args.name)
        if not specs:
            raise PluginError(unknown_name_message("plugin", args.name, sorted({s.name for s in registry.specs()})))
        if len(specs) > 1:
            kinds = ", ".join(s.kind for s in specs)
            raise PluginError(f"several plugins are called '{args.name}' ({kinds}); add --kind KIND to pick one")
    spec = specs[0]
    config_cls = registry.config_class(spec.kind, spec.name)  # an algorithm variant's: the run config it takes
    fields = describe_fields(config_cls) if config_cls is not None else []
    if args.json:
        record = {**spec_record(spec), "run_config": spec.run_config}
        print_json({**record, "config": getattr(config_cls, "__qualname__", None), "fields": fields})
        return 0
    console.print(f"[bold]{spec.kind.replace('_', ' ')} '{spec.name}'[/] from {escape(str(spec.source))}")
    if spec.description:
        console.print(escape(spec.description))
    summary = capability_summary(spec_record(spec))
    if summary:
        console.print(f"can: {escape(summary)}")
    if spec.run_config:
        console.print(f"takes the run config of the algorithm '{escape(spec.run_config)}' (its schedule included)")
    if not spec.available:
        console.print(f"[yellow]not available here; install with: {escape(spec.install_hint())}[/]")
    if config_cls is None:
        console.print("takes no options")
        return 0
    table = Table(title=f"options ({config_cls.__qualname__})", title_justify="left")
    for column in ("field", "type", "default", "doc"):
        table.add_column(column, overflow="fold")
    for f in fields:
        table.add_row(f["name"], escape(f["type"]), escape(f["default"]), escape(f["doc"]))
    console.print(table)
    return 0
