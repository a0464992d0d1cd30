"""The `reinforge` command. Each subcommand is one module in this package with
`add_parser(subparsers)` and `run(args) -> int`; adding one is adding a module to SUBCOMMANDS."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from reinforge import __version__
from reinforge.core.errors import ReinforgeError

SUBCOMMANDS = ("plugins", "config", "train", "eval", "convert", "plot", "model", "doctor")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reinforge",
        description="Plugin-based RL post-training of language models (GRPO, DPO, SFT).",
    )
    parser.add_argument("--version", action="version", version=f"reinforge {__version__}")
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks for errors")
    parser.add_argument(
        "--plugins",
        metavar="FILE",
        help="project plugins.toml, consent to import its local modules for this run "
        "(default: $REINFORGE_PLUGINS, else a trusted ./plugins.toml; see `plugins trust`)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"reinforge.cli.{name}_cmd").add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except ReinforgeError as exc:
        if args.debug:
            raise
        from reinforge.cli.output import print_error

        print_error(str(exc))
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
