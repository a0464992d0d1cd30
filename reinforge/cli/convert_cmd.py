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
    parser.add_argument(
        "--allow-unverified",
        action="store_true",
        help="convert a checkpoint that has no manifest.json (written before checkpoints had manifests); its files are still read "
        "without running pickled code",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from reinforge.core.load import load_config
    from reinforge.core.registry import Registry

    dcp = Path(args.dcp_ckpt_path)
    if not dcp.is_dir():
        raise ReinforgeError(f"checkpoint folder '{dcp}' does not exist; pass the policy/ folder inside a step_N/ checkpoint")
    verify_before_reading(dcp, allow_unverified=args.allow_unverified)
    config_path = Path(args.config) if args.config else dcp.parent / "config.yaml"
    registry = Registry.create(project_file=args.plugins)
    config = load_config(config_path, (), registry)
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


def verify_before_reading(dcp: Path, *, allow_unverified: bool) -> None:
    """The checkpoint holding `dcp` must match its manifest before anything in it is deserialised."""
    from reinforge.core.checkpoint_manifest import find_manifest_root, verify_checkpoint

    root = find_manifest_root(dcp)
    if root is None:
        if allow_unverified:
            return
        if (dcp / "config.json").is_file() and any(dcp.glob("*.safetensors")):
            raise ReinforgeError(
                f"'{dcp}' is a Hugging Face model folder, not a training checkpoint; convert reads the policy/ folder "
                "of a step_N checkpoint (e.g. results/run/checkpoints/step_40/policy). A Hugging Face folder needs no conversion"
            )
        raise ReinforgeError(
            f"'{dcp}' is not inside a checkpoint with a manifest.json, so reinforge cannot check it before reading it "
            "(it was written before reinforge checkpoints had manifests, or not by reinforge). Nothing was read. If you trust it, pass "
            "--allow-unverified (files are still read without running pickled code)"
        )
    problems = verify_checkpoint(root)
    if problems:
        raise ReinforgeError(
            f"checkpoint {root} is damaged or was altered: {'; '.join(problems[:5])}. Nothing was read; convert "
            "another step_N folder"
        )
