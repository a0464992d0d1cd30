"""`reinforge model build`: the project's own small Qwen2 models, built offline (tests, demos, benchmarks)."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from reinforge.cli.output import console
from reinforge.core.errors import ReinforgeError


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("model", help="build the offline tiny/small models of the tiny-model kit")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    build = actions.add_parser("build", help="write a Hugging Face model folder (cached; nothing is downloaded)")
    build.add_argument("--size", default="small", help="preset: tiny (~0.5 M parameters) or small (~10-30 M)")
    build.add_argument("--warmup-steps", type=int, default=0, help="pre-train on arithmetic conversations for N steps")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--out", required=True, help="destination folder (reused when it already holds this model)")
    build.set_defaults(run=run_build)


def run_build(args: argparse.Namespace) -> int:
    from reinforge.testing.tiny_model import METADATA_FILE, build_model

    out = Path(args.out)
    cached = build_model(size=args.size, seed=args.seed, warmup_steps=args.warmup_steps)
    if (out / METADATA_FILE).is_file() and (out / METADATA_FILE).read_text() == (cached / METADATA_FILE).read_text():
        console.print(f"{out} already holds this model", markup=False)
        return 0
    if out.exists() and any(out.iterdir()):
        raise ReinforgeError(f"{out} exists and holds something else; choose another --out or remove it")
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(cached, out, dirs_exist_ok=True)
    console.print(f"wrote the {args.size} model to {out}", markup=False)
    return 0
