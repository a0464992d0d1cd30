"""`reinforge eval --config EVAL.yaml [overrides...]`: pass@k, avg@k and cons@k of a model folder."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from reinforge.cli.output import console, error_console

# Inside the package, so an installed reinforge (not only a repository checkout) has them. AIME 2024 with
# vLLM in bfloat16 is what the DeepScaleR recipe is judged by, and needs a GPU; without one the default is
# the CPU recipes' held-out arithmetic with the hf generator in float32, which runs in seconds there.
DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "eval" / "aime24.yaml"
CPU_DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "eval" / "arith-cpu.yaml"


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("eval", help="evaluate a model folder on a dataset (pass@k, avg@k, cons@k)")
    parser.add_argument(
        "--config",
        help="evaluation YAML (default: AIME 2024, reinforge/eval/aime24.yaml, where a GPU is visible; otherwise the "
        "CPU recipes' held-out arithmetic, reinforge/eval/arith-cpu.yaml)",
    )
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. generation.model_name=/path/hf")
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON")
    parser.set_defaults(run=run)


def default_config() -> Path:
    """AIME 2024 where a CUDA GPU is visible, the CPU arithmetic evaluation elsewhere."""
    import torch

    return DEFAULT_CONFIG if torch.cuda.is_available() else CPU_DEFAULT_CONFIG


def run(args: argparse.Namespace) -> int:
    from reinforge.core.load import load_config
    from reinforge.core.registry import Registry
    from reinforge.eval.config import EvalConfig
    from reinforge.eval.runner import ResultsNotSaved, evaluate

    registry = Registry.create(project_file=args.plugins, config_file=args.config)
    path = args.config or default_config()
    if args.config is None and path == CPU_DEFAULT_CONFIG:
        error_console.print(  # stderr: stdout stays the result (JSON with --json)
            f"no GPU here: evaluating with the CPU default {path.name} (held-out sums, hf, float32); "
            f"pass --config {DEFAULT_CONFIG} for AIME 2024",
            markup=False,
        )
    config = load_config(path, args.overrides, registry, schema=EvalConfig)
    try:
        metrics = evaluate(config, registry)
    except ResultsNotSaved as exc:  # the samples went to stdout; show the metrics too, then the error (exit 1)
        _print_metrics(exc.metrics, config, as_json=args.json)
        raise
    _print_metrics(metrics, config, as_json=args.json)
    return 0


def _print_metrics(metrics: dict[str, float], config: Any, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(metrics, indent=2))
        return
    table = Table(title=f"evaluation of {escape(config.generation.model_name)}", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        table.add_row(escape(key), f"{value:.4f}" if not key.startswith("num_") else f"{int(value)}")
    console.print(table)
