"""`reinforge convert`: a training checkpoint (torch.distributed.checkpoint) -> a Hugging Face folder.

A LoRA checkpoint (adapters only) converts to the base model with the adapters merged in, so convert ->
eval -> the next recipe work as after a full fine-tune; `--adapter` writes a PEFT adapter folder instead.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from reinforge.cli.output import console
from reinforge.core.errors import ReinforgeError
from reinforge.core.output_paths import check_output_folder


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("convert", help="export a checkpoint's policy to a Hugging Face folder")
    parser.add_argument("--config", help="the checkpoint's config.yaml (default: <dcp-ckpt-path>/../config.yaml)")
    parser.add_argument("--dcp-ckpt-path", required=True, help="the checkpoint's policy folder, e.g. results/x/step_40/policy")
    parser.add_argument("--hf-ckpt-path", required=True, help="output folder (new or empty, unless --force)")
    parser.add_argument("--force", action="store_true", help="write into a non-empty output folder, replacing its files")
    parser.add_argument(
        "--adapter",
        action="store_true",
        help="LoRA checkpoints: write the adapter as a PEFT folder (adapter_config.json + adapter_model.safetensors) "
        "instead of the base model with the adapter merged in (the default)",
    )
    parser.add_argument(
        "--allow-unverified",
        action="store_true",
        help="convert a checkpoint that has no manifest.json (written before checkpoints had manifests); its files are "
        "still read without running pickled code",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from reinforge.core.config import load_yaml
    from reinforge.core.load import load_config
    from reinforge.core.loop import ComposedRunConfig
    from reinforge.core.registry import Registry

    dcp = checkpoint_input(Path(args.dcp_ckpt_path))
    check_output(Path(args.hf_ckpt_path), force=args.force)
    verify_before_reading(dcp, allow_unverified=args.allow_unverified)  # before anything in it is read
    config_path = Path(args.config) if args.config else dcp.parent / "config.yaml"
    registry = Registry.create(project_file=args.plugins)
    # A recipe's config names its algorithm; a run composed in Python writes a ComposedRunConfig.
    composed = config_path.is_file() and "algorithm" not in (load_yaml(config_path) or {})
    config = load_config(config_path, (), registry, schema=ComposedRunConfig if composed else None)
    check_base_model(config.policy.model_name, config_path, given=args.config is not None)
    backend = registry.get("training_backend", config.policy.backend)
    convert = _converter(backend.load())
    extra = {"adapter": True} if args.adapter else {}
    if args.adapter and not _accepts_adapter(convert):
        raise ReinforgeError(
            f"the training backend '{config.policy.backend}' cannot write adapter folders (its checkpoint_to_hf takes no "
            "adapter=); convert without --adapter"
        )
    out = convert(str(dcp), config.policy.model_name, str(args.hf_ckpt_path), tokenizer_dir=config.policy.tokenizer_name, **extra)
    what = "a PEFT adapter folder" if args.adapter else "a Hugging Face folder"
    console.print(f"wrote {what} to {out}", markup=False)
    return 0


def check_base_model(name: str, config_path: Path, *, given: bool) -> None:
    """The export reads the base model's config.json and tokenizer: a local folder that is gone is named with
    the key and file that point at it (not transformers' "Repo id must be ..." for a missing path)."""
    folder = Path(name).expanduser()
    local = name.startswith(("/", ".", "~")) or name.count("/") > 1  # hub ids are "name" or "org/name"
    if local and not (folder / "config.json").is_file():
        what = "does not exist" if not folder.exists() else "has no config.json"
        fix = "set policy.model_name in that file" if given else f"pass --config with a copy of {config_path} whose policy.model_name points"
        raise ReinforgeError(
            f"the base model folder '{name}' (policy.model_name in {config_path}) {what}; the export takes the model's "
            f"config.json and tokenizer from it. Restore that folder, or {fix} to the base model's folder (the one "
            "the run trained from)"
        )


def _converter(backend_cls: type):  # noqa: ANN202
    convert = getattr(backend_cls, "checkpoint_to_hf", None)
    if convert is None:
        raise ReinforgeError(f"the training backend {backend_cls.__name__} cannot convert checkpoints (no checkpoint_to_hf)")
    return convert


def _accepts_adapter(convert: object) -> bool:
    import inspect

    try:
        return "adapter" in inspect.signature(convert).parameters  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def verify_before_reading(dcp: Path, *, allow_unverified: bool) -> None:
    """The checkpoint holding `dcp` must match its manifest before anything in it is deserialised."""
    from reinforge.core.checkpoint_manifest import find_manifest_root, unsafe_entries, verify_checkpoint

    root = find_manifest_root(dcp)
    if root is None:
        if allow_unverified:
            unsafe = unsafe_entries(dcp)  # unverified still never means reading files from elsewhere
            if unsafe:
                raise ReinforgeError(f"checkpoint {dcp} cannot be converted: {'; '.join(unsafe[:5])}. Nothing was read")
            return
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


def checkpoint_input(path: Path) -> Path:
    """The policy/ folder of the checkpoint `path` names (a step_N/ folder is accepted for its policy/)."""
    from reinforge.core.model_folder import looks_like_checkpoint, looks_like_hf_folder

    if not path.exists():
        raise ReinforgeError(f"checkpoint folder '{path}' does not exist; pass the policy/ folder inside a step_N/ checkpoint")
    if not path.is_dir():
        raise ReinforgeError(f"--dcp-ckpt-path '{path}' is a file; pass the policy/ folder inside a step_N/ checkpoint")
    if (path / "policy").is_dir() and looks_like_checkpoint(path / "policy"):
        return path / "policy"  # a step_N/ folder: its policy is what converts
    if looks_like_hf_folder(path) and not looks_like_checkpoint(path):
        raise ReinforgeError(
            f"--dcp-ckpt-path '{path}' is a Hugging Face model folder already (config.json and weights), not a "
            "training checkpoint; use it as it is (policy.model_name / generation.model_name), or pass a "
            "step_N/policy folder of a reinforge run to convert"
        )
    if not looks_like_checkpoint(path):
        raise ReinforgeError(
            f"--dcp-ckpt-path '{path}' holds no training checkpoint (no dcp/.metadata or mcore/ metadata); pass the policy/ folder "
            "inside a step_N/ folder of checkpointing.checkpoint_dir"
        )
    return path


def check_output(out: Path, *, force: bool) -> None:
    """Refuse to write over a file, or (without --force) into a folder that already holds something."""
    if out.exists() and not out.is_dir():
        raise ReinforgeError(f"--hf-ckpt-path '{out}' is an existing file; name a new or empty folder for the Hugging Face export")
    if out.is_dir() and any(out.iterdir()) and not force:
        what = "another model (config.json)" if (out / "config.json").exists() else "files"
        raise ReinforgeError(
            f"--hf-ckpt-path '{out}' is not empty: it holds {what}, which the export would overwrite; name a new "
            "folder, empty this one, or pass --force to replace its files"
        )
    check_output_folder(out, "--hf-ckpt-path")  # before minutes of converting, not after
