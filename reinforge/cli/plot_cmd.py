"""`reinforge plot RUN_DIR`: PNG charts of a run's metrics.jsonl (reward, validation, lengths, step time)."""

from __future__ import annotations

import argparse

from reinforge.cli.output import console


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("plot", help="draw PNG charts of a run's metrics.jsonl")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="the run's log directory (logger.log_dir), holding metrics.jsonl")
    parser.add_argument("--out", metavar="DIR", default=None, help="where the PNGs go (default: RUN_DIR/plots)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from reinforge.plotting import plot_run  # matplotlib loads only when plotting, not for `reinforge --help`

    written = plot_run(args.run_dir, args.out)
    if not written:
        console.print(
            "no charts: metrics.jsonl has none of train/reward_mean, train/accuracy, val/*, "
            "train/response_length_*, timing/*",
            markup=False,
        )
        return 0
    for path in written:
        console.print(str(path), markup=False, highlight=False, soft_wrap=True)
    return 0
