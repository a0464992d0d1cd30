"""`reinforge model build`: the project's own small Qwen2 models, built offline (tests, demos, benchmarks)."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from reinforge.cli.output import console
from reinforge.core.errors import ReinforgeError


# The demo's policy: small, warmed up on every "+"/"-" problem with operands 0..10 until it is mostly
# right (about 80 % of its sampled answers), writing only 15 % of them in the \boxed{} format the
# reward asks for. GRPO then has two things to learn, the format and the sums' remaining errors.
DEMO_MODEL = {
    "size": "small",
    "warmup_steps": 500,
    "warmup_max_operand": 10,
    "warmup_batch_size": 16,
    "warmup_lr": 1e-3,
    "warmup_boxed_fraction": 0.15,
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("model", help="build the offline tiny/small models of the tiny-model kit")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    build = actions.add_parser("build", help="write a Hugging Face model folder (cached; nothing is downloaded)")
    build.add_argument(
        "--demo",
        action="store_true",
        help="the CPU demo's model (examples/configs/grpo-arith-cpu.yaml): "
        + ", ".join(f"{k.replace('_', '-')} {v}" for k, v in DEMO_MODEL.items())
        + "; flags given beside it win",
    )
    build.add_argument("--size", help="preset: tiny (~0.5 M parameters) or small (~10-30 M; the default)")
    build.add_argument("--warmup-steps", type=int, help="pre-train on arithmetic conversations for N steps (default 0)")
    build.add_argument("--warmup-max-operand", type=int, help="largest operand of the warm-up problems (default: the kit's)")
    build.add_argument("--warmup-batch-size", type=int, help="conversations per warm-up step (default: the kit's)")
    build.add_argument("--warmup-lr", type=float, help="peak warm-up learning rate (default: the kit's)")
    build.add_argument(
        "--warmup-boxed-fraction",
        type=float,
        help="share of warm-up answers written as \\boxed{} (default 1.0; lower leaves a format for RL to teach)",
    )
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--out", required=True, help="destination folder (reused when it already holds this model)")
    build.set_defaults(run=run_build)


def resolve_demo(args: argparse.Namespace) -> None:
    """Fill the flags left unset from DEMO_MODEL when --demo is given, then the plain defaults."""
    for name, value in (DEMO_MODEL if args.demo else {}).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.size = args.size or "small"
    args.warmup_steps = args.warmup_steps or 0


def run_build(args: argparse.Namespace) -> int:
    import attrs

    resolve_demo(args)

    from reinforge.testing.tiny_model import METADATA_FILE, build_model
    from reinforge.testing.warmup import WarmupConfig

    changes = {
        "max_operand": args.warmup_max_operand,
        "batch_size": args.warmup_batch_size,
        "learning_rate": args.warmup_lr,
        "boxed_probability": args.warmup_boxed_fraction,
    }
    if args.warmup_max_operand is not None:  # every distinct problem of the smaller space
        changes["num_problems"] = _distinct_problems(args.warmup_max_operand)
    warmup = attrs.evolve(WarmupConfig(), **{k: v for k, v in changes.items() if v is not None})
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ReinforgeError(f"--out '{out}' is an existing file; name a new or empty folder for the model")
    cached = build_model(size=args.size, seed=args.seed, warmup_steps=args.warmup_steps, warmup=warmup)
    if (out / METADATA_FILE).is_file() and (out / METADATA_FILE).read_text() == (cached / METADATA_FILE).read_text():
        console.print(f"{out} already holds this model", markup=False)
        return 0
    if out.exists() and any(out.iterdir()):
        raise ReinforgeError(f"{out} exists and holds something else; choose another --out or remove it")
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(cached, out, dirs_exist_ok=True)
    console.print(f"wrote the {args.size} model to {out}", markup=False)
    return 0


def _distinct_problems(max_operand: int) -> int:
    """How many distinct "a + b" and non-negative "a - b" problems operands 0..max_operand give."""
    n = max_operand + 1
    return n * n + n * (n + 1) // 2
