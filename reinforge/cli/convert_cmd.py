"""`reinforge convert`: a training checkpoint (torch.distributed.checkpoint) -> a Hugging Face folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from reinforge.cli.output import console
from reinforge.core.errors import ReinforgeError


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("convert", help="export a checkpoint's policy to a Hugging Face folder")
    parser.add_argument("--config", help="the checkpoint's config.yaml (default: <dcp-ckpt-path>/../config.yaml)")
    parser.add_argument("--dcp-ckpt-path", required=True, help="the checkpoint's policy folder, e.g. results/x/step_40/policy")
    parser.add_argument("--hf-ckpt-path", required=True, help="output folder")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from reinforge.core.config import load_yaml
    from reinforge.core.load import load_config
    from reinforge.core.loop import ComposedRunConfig
    from reinforge.core.registry import Registry

    dcp = Path(args.dcp_ckpt_path)
    if not dcp.is_dir():
        raise ReinforgeError(f"checkpoint folder '{dcp}' does not exist; pass the policy/ folder inside a step_N/ checkpoint")
    config_path = Path(args.config) if args.config else dcp.parent / "config.yaml"
    registry = Registry.create(project_file=args.plugins)
    # A recipe's config names its algorithm; a run composed in Python writes a ComposedRunConfig.
    composed = config_path.is_file() and "algorithm" not in (load_yaml(config_path) or {})
    config = load_config(config_path, (), registry, schema=ComposedRunConfig if composed else None)
    backend = registry.get("training_backend", config.policy.backend)
    convert = _converter(backend.load())
    out = convert(str(dcp), config.policy.model_name, str(args.hf_ckpt_path), tokenizer_dir=config.policy.tokenizer_name)
    console.print(f"wrote a Hugging Face folder to {out}", markup=False)
    return 0


def _converter(backend_cls: type):  # noqa: ANN202
    convert = getattr(backend_cls, "checkpoint_to_hf", None)
    if convert is None:
        raise ReinforgeError(f"the training backend {backend_cls.__name__} cannot convert checkpoints (no checkpoint_to_hf)")
    return convert
