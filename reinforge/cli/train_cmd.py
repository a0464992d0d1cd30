"""`reinforge train --config FILE [overrides...]`: the same code as `Trainer.from_config(...).fit()`."""

from __future__ import annotations

import argparse

from reinforge.cli.output import console, error_console
from reinforge.core.load import load_config
from reinforge.core.registry import Registry


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("train", help="train with a recipe (GRPO, DPO, SFT, ...)")
    parser.add_argument("--config", required=True, help="recipe YAML file")
    parser.add_argument("overrides", nargs="*", help="dotted overrides: key.path=value, +new.key=value")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from reinforge.trainer import Trainer  # imports torch: only when training

    registry = Registry.create(project_file=args.plugins, config_file=args.config)
    if registry.settings.project_file:  # local code is about to run: say whose
        error_console.print(f"project plugins from {registry.settings.project_file}", markup=False, style="dim")
    config = load_config(args.config, args.overrides, registry)
    trainer = Trainer.from_config(config, registry)
    metrics = trainer.fit()
    console.print(f"finished at step {trainer.step}; logs in {config.logger.log_dir}", markup=False)
    for key in sorted(k for k in metrics if k.startswith("val/")):
        console.print(f"  {key} = {metrics[key]:.4f}", markup=False)
    return 0
