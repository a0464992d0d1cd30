"""`reinforge config show`: the fully resolved config as YAML, or every error with its path."""

from __future__ import annotations

import argparse

from reinforge.cli.output import console
from reinforge.core.config import dump_yaml
from reinforge.core.load import load_config
from reinforge.core.registry import Registry


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("config", help="resolve and validate configs")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = actions.add_parser("show", help="print the resolved config (defaults, overrides, plugin options)")
    show.add_argument("config", help="recipe YAML file")
    show.add_argument("overrides", nargs="*", help="dotted overrides: key.path=value, +new.key=value")
    show.set_defaults(run=run_show)


def run_show(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.overrides, Registry.create(project_file=args.plugins, config_file=args.config))
    console.print(dump_yaml(config), end="", markup=False, highlight=False)
    return 0
