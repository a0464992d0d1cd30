"""Running `reinforge train` as a user's job would, hurting it (kill -9, SIGTERM, damage, a full disk),
and checking that the run it finally completes is exactly the run nobody hurt."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.metadata import TensorStorageMetadata

from reinforge.backends.training.safe_dcp import SafeFileSystemReader, SafeLoadPlanner
from reinforge.core.checkpoint_manifest import verify_checkpoint
from tests.integration.grpo_helpers import CPU_RECIPE, OFFLINE_ENV, REINFORGE, read_metrics, tiny_overrides

STEPS = 6
# Keys that measure the machine, not the run: they differ between any two runs. The process's peak RSS
# is one: it equalled the reference's only while every big block was mapped to its exact size; once
# the dtensor backend keeps freed memory on the heap (keep_freed_memory) it varies by a few pages.
_NOT_COMPARED = ("timing/", "refit/", "env/worker_restarts", "train/memory_peak_rss_bytes")


def overrides(model_dir: Path, out: Path, *extra: str, logs: Path | None = None) -> list[str]:
    args = tiny_overrides(
        model_dir,
        out,
        steps=STEPS,
        extra=(
            "checkpointing.save_period=1",
            "checkpointing.keep_top_k=2",
            "checkpointing.metric_name=null",
            "grpo.val_at_end=false",
            *extra,
        ),
    )
    if logs is not None:
        args.append(f"logger.log_dir={logs}")
    return args


def start(model_dir: Path, out: Path, *extra: str, logs: Path | None = None) -> subprocess.Popen[str]:
    """`reinforge train` on the tiny model in the background; stderr goes to out/stderr.log (appended)."""
    out.mkdir(parents=True, exist_ok=True)
    log = (out / "stderr.log").open("a")
    env = {**os.environ, **OFFLINE_ENV, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [REINFORGE, "train", "--config", str(CPU_RECIPE), *overrides(model_dir, out, *extra, logs=logs)],
        stdout=subprocess.DEVNULL, stderr=log, text=True, env=env,
    )


def run(model_dir: Path, out: Path, *extra: str, logs: Path | None = None) -> int:
    process = start(model_dir, out, *extra, logs=logs)
    return process.wait(timeout=600)


def wait_for(process: subprocess.Popen[str], condition: Callable[[], bool], poll_s: float = 0.005) -> bool:
    """Poll until `condition()` (True) or the process exits (False)."""
    while process.poll() is None:
        if condition():
            return True
        time.sleep(poll_s)
    return False


def kill9(process: subprocess.Popen[str]) -> None:
    """SIGKILL the trainer (its math-verify workers see their parent die and exit on their own)."""
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)


def saving(ckpt_dir: Path) -> Callable[[], bool]:
    """True while a checkpoint is being written (its tmp_step_N folder exists)."""
    return lambda: ckpt_dir.is_dir() and any(p.name.startswith("tmp_step_") for p in ckpt_dir.iterdir())


def rows_logged(log_dir: Path, at_least: int) -> Callable[[], bool]:
    def check() -> bool:
        path = log_dir / "metrics.jsonl"
        return path.is_file() and path.read_text().count("\n") >= at_least

    return check


def published_checkpoints_are_intact(ckpt_dir: Path) -> list[int]:
    """Every step_N folder matches its manifest (a kill never publishes a half checkpoint); returns the steps."""
    steps = []
    for folder in sorted(ckpt_dir.glob("step_*")):
        assert verify_checkpoint(folder) == [], (folder, verify_checkpoint(folder))
        steps.append(int(folder.name.removeprefix("step_")))
    return sorted(steps)


def checkpoint_state(step_dir: Path) -> dict[str, object]:
    """Everything a checkpoint restores: model and optimizer tensors, dataloader, trainer and RNG state."""
    source = step_dir / "policy" / "dcp"
    metadata = SafeFileSystemReader(source).read_metadata()
    tensors = {
        key: torch.empty(tuple(entry.size), dtype=entry.properties.dtype)
        for key, entry in metadata.state_dict_metadata.items()
        if isinstance(entry, TensorStorageMetadata)
    }
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*single process.*")
        dcp.load(tensors, storage_reader=SafeFileSystemReader(source), planner=SafeLoadPlanner(), no_dist=True)
    return {
        "tensors": tensors,
        "dataloader": json.loads((step_dir / "dataloader.json").read_text()),
        "trainer_state": json.loads((step_dir / "trainer_state.json").read_text()),
        "rng": (step_dir / "trainer_rng.safetensors").read_bytes(),
        "policy_rng": (step_dir / "policy" / "rng_rank0.pt").read_bytes(),
    }


def assert_same_run(reference: Path, faulted: Path, *, reference_logs: Path | None = None, faulted_logs: Path | None = None) -> None:
    """The faulted run logged every step exactly once, with the reference's values, and ended in the same state."""
    want_rows = read_metrics(reference_logs or reference / "logs")
    got_rows = read_metrics(faulted_logs or faulted / "logs")
    assert [r["step"] for r in got_rows] == [r["step"] for r in want_rows] == list(range(1, STEPS + 1))
    for want, got in zip(want_rows, got_rows, strict=True):
        for key, value in want.items():
            if not key.startswith(_NOT_COMPARED):
                assert got.get(key) == value, (want["step"], key, got.get(key), value)
    final_want = checkpoint_state(reference / "ckpt" / f"step_{STEPS}")
    final_got = checkpoint_state(faulted / "ckpt" / f"step_{STEPS}")
    assert final_got["tensors"].keys() == final_want["tensors"].keys()
    for name, tensor in final_want["tensors"].items():
        assert torch.equal(final_got["tensors"][name], tensor), name  # bitwise
    for part in ("dataloader", "trainer_state", "rng", "policy_rng"):
        assert final_got[part] == final_want[part], part
