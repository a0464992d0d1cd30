"""Checkpoint folders that are either complete or absent, and which of them to keep.

A checkpoint is a folder `step_{N}/` under `checkpointing.checkpoint_dir`:

    step_{N}/
      ...                  what the trainer's `write` callable puts there (policy, optimizer, dataloader)
      training_info.json   {"step": N, "metrics": {...}, ...anything the trainer adds}
      config.yaml          the run's resolved config
      manifest.json        every file above with its size and SHA-256 (`checkpoint_manifest`)

It is written as `tmp_step_{N}/` and renamed to `step_{N}/` only when every part is on disk
(fsynced), so a crash or an exception mid-save never leaves a `step_{N}/` that resume would
pick up half-written. Leftover `tmp_step_*` folders from a crash are removed when the manager
starts. Resume looks only at `step_{N}/` folders holding `training_info.json`, newest first, and
takes the first one that matches its manifest (`find_resumable`); a damaged one is skipped with
a warning naming it and what is wrong.

Retention (`keep_top_k`): with a `metric_name` ("val:accuracy" means the metric key
`val/accuracy`), the k best checkpoints by that metric are kept, plus always the latest one,
so resume never loses progress; checkpoints saved without the metric rank below every one
with it. Without a metric, the latest k are kept.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from reinforge.core.checkpoint_manifest import verify_checkpoint, write_manifest
from reinforge.core.errors import ReinforgeError
from reinforge.core.run_config import CheckpointingConfig

TRAINING_INFO = "training_info.json"
CONFIG_FILE = "config.yaml"
_STEP_DIR = re.compile(r"step_(\d+)")
_TMP_GLOB = "tmp_step_*"


def metric_key(metric_name: str) -> str:
    """"val:accuracy" -> "val/accuracy" (the NeMo-RL spelling of a logged metric key); keys pass through."""
    prefix, sep, rest = metric_name.partition(":")
    return f"{prefix}/{rest}" if sep else metric_name


def load_training_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The `training_info.json` of the checkpoint folder `path`."""
    file = Path(path) / TRAINING_INFO
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReinforgeError(
            f"'{path}' is not a complete checkpoint (no {TRAINING_INFO}); pass a step_N folder written by reinforge"
        ) from None
    except json.JSONDecodeError as exc:
        raise ReinforgeError(f"{file} is not valid JSON ({exc}); the checkpoint is damaged, resume from another step") from None


def _jsonable(value: Any) -> Any:
    """Strict JSON: NaN/inf become null; tensors and numpy values become numbers or lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist") and callable(value.tolist):
        return _jsonable(value.tolist())
    return value


def check_writable(config: Any) -> None:
    """Fail at start, not at the first save, when the checkpoint or log folder cannot be written."""
    folders = [("logger.log_dir", getattr(getattr(config, "logger", None), "log_dir", None))]
    ckpt = getattr(config, "checkpointing", None)
    if ckpt is not None and ckpt.enabled:
        folders.insert(0, ("checkpointing.checkpoint_dir", ckpt.checkpoint_dir))
    for key, folder in folders:
        if folder is None:
            continue
        path = Path(folder).expanduser()
        probe = path / f".reinforge_write_test_{os.getpid()}"
        try:
            path.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as exc:
            raise ReinforgeError(
                f"{key} '{folder}' is not writable: {exc.strerror or exc} ({exc.filename or path}); pick a folder you "
                "can write to (or fix its permissions) before training starts"
            ) from None


def _probe_write(folder: Path, size: int = 1 << 20) -> OSError | None:
    """The OS error writing (and syncing) `size` bytes into `folder` gives now, or None if it works."""
    probe = folder / f".reinforge_probe_{os.getpid()}"
    try:
        with open(probe, "wb") as handle:
            handle.write(b"\0" * size)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        return exc
    finally:
        probe.unlink(missing_ok=True)
    return None


def _fsync_tree(root: Path) -> None:
    """Flush every file under `root`, then the folders, so a rename publishes data that is on disk."""
    if os.name == "nt":  # directories cannot be opened for fsync on Windows; the rename is still atomic
        return
    for folder, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(folder))


def _fsync_dir(folder: Path) -> None:
    if os.name == "nt":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DeferredInterrupt:
    """Holds a Ctrl-C (SIGINT) that arrives during a checkpoint save until the save is published.

    Interrupted halfway, a save used to die inside torch.save or DCP with their own traceback (exit 1).
    The first SIGINT now only says that the save is finishing; the save completes (or fails on its
    own), then KeyboardInterrupt is raised as usual (exit 130). A second SIGINT abandons the save: the
    partial folder is removed and the checkpoints already published are untouched either way.
    Outside the main thread (a notebook's worker) signals cannot be caught and nothing changes.
    """

    def __init__(self, what: str) -> None:
        self.what = what
        self.pending = False
        self.abandoned = False
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> DeferredInterrupt:
        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)
            self._installed = True
        return self

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        if self.pending:
            self.abandoned = True
            raise KeyboardInterrupt
        self.pending = True
        print(f"reinforge: interrupted while saving {self.what}; finishing the save first (Ctrl-C again abandons it)", file=sys.stderr, flush=True)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False
        if self.pending and exc_type is None:
            raise KeyboardInterrupt  # the save is published: now stop, as the user asked


class CheckpointManager:
    """Writes, finds and prunes `step_{N}/` folders under `config.checkpoint_dir`.

    Whether and when to save (`enabled`, `save_period`) and whether to resume (`resume`) are the
    trainer's decisions; the manager only makes each save safe and each lookup correct. Only one
    process (rank 0) should own a manager for a given folder.
    """

    def __init__(self, config: CheckpointingConfig) -> None:
        self.config = config
        self.root = Path(config.checkpoint_dir)
        self.metric_key = metric_key(config.metric_name) if config.metric_name else None
        self.remove_stale()

    # ----------------------------------------------------------------- finding
    def checkpoints(self) -> dict[int, Path]:
        """Complete checkpoints by step, oldest first (folders without training_info.json are not ours)."""
        if not self.root.is_dir():
            return {}
        found = {}
        for entry in self.root.iterdir():
            match = _STEP_DIR.fullmatch(entry.name)
            if match and entry.is_dir() and (entry / TRAINING_INFO).is_file():
                found[int(match.group(1))] = entry
        return dict(sorted(found.items()))

    def latest_step(self) -> int | None:
        """The step of the newest complete checkpoint, or None when there is none (start fresh)."""
        steps = self.checkpoints()
        return max(steps) if steps else None

    def latest_path(self) -> Path | None:
        """The folder of the newest complete checkpoint, or None."""
        step = self.latest_step()
        return None if step is None else self.checkpoints()[step]

    def find_resumable(self, warn: Callable[[str], None]) -> Path | None:
        """The newest checkpoint that matches its manifest; each damaged newer one is skipped through `warn`.

        Raises when checkpoints exist but none is intact: starting over silently would write new
        step folders beside damaged ones and hide the problem.
        """
        checkpoints = self.checkpoints()
        skipped = []
        for step in sorted(checkpoints, reverse=True):
            path = checkpoints[step]
            problems = verify_checkpoint(path)
            if not problems:
                return path
            skipped.append(f"{path.name}: {problems[0]}")
            more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
            warn(f"skipping damaged checkpoint {path}: {'; '.join(problems[:3])}{more}")
        if skipped:
            raise ReinforgeError(
                f"no intact checkpoint to resume from in {self.root}: {'; '.join(skipped)}. Nothing in them was loaded. "
                "Pass checkpointing.resume=false to start over (or point checkpointing.checkpoint_dir at a new folder)"
            )
        return None

    @staticmethod
    def load_training_info(path: str | os.PathLike[str]) -> dict[str, Any]:
        """The `training_info.json` of a checkpoint folder (see the module-level function)."""
        return load_training_info(path)

    # ----------------------------------------------------------------- writing
    def remove_stale(self) -> list[Path]:
        """Delete `tmp_step_*` folders left by a save that never finished; returns what was removed."""
        if not self.root.is_dir():
            return []
        stale = sorted(p for p in self.root.glob(_TMP_GLOB) if p.is_dir())
        for path in stale:
            shutil.rmtree(path, ignore_errors=True)
        return stale

    def save(
        self,
        step: int,
        write: Callable[[Path], None],
        *,
        training_info: Mapping[str, Any],
        config_yaml: str,
        metrics: Mapping[str, Any],
    ) -> Path:
        """Write checkpoint `step` atomically, apply retention, and return its `step_{N}/` folder.

        `write(folder)` saves the trainer's parts (policy, optimizer, dataloader) into the
        temporary folder. If it raises, the temporary folder is removed and the error propagates;
        the checkpoints already on disk are untouched.
        """
        if step < 0:
            raise ValueError(f"checkpoint step must be >= 0, got {step}")
        with DeferredInterrupt(f"checkpoint step {step}") as interrupt:
            return self._save(step, write, interrupt, training_info=training_info, config_yaml=config_yaml, metrics=metrics)

    def _save(
        self,
        step: int,
        write: Callable[[Path], None],
        interrupt: DeferredInterrupt,
        *,
        training_info: Mapping[str, Any],
        config_yaml: str,
        metrics: Mapping[str, Any],
    ) -> Path:
        final = self.root / f"step_{step}"
        tmp = self.root / f"tmp_step_{step}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            write(tmp)
            info = {**_jsonable(dict(training_info)), "step": step, "metrics": _jsonable(dict(metrics))}
            (tmp / TRAINING_INFO).write_text(json.dumps(info, indent=2, allow_nan=False, default=str) + "\n", encoding="utf-8")
            (tmp / CONFIG_FILE).write_text(config_yaml, encoding="utf-8")
            write_manifest(tmp)
            _fsync_tree(tmp)
            self._publish(tmp, final)
        except BaseException as exc:
            # Libraries often hide the OS error (DCP turns ENOSPC into "unexpected pos" inside its own
            # exception): while the partial save still fills the disk, a small probe write recovers it.
            # (DCP's CheckpointException derives from BaseException, so only interrupts are left out.)
            # A second Ctrl-C abandons the save: libraries turn the KeyboardInterrupt into their own errors
            # (torch.save's "unexpected pos", DCP's CheckpointException), which are that interrupt, not a failure.
            interrupted = isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit) or interrupt.abandoned
            if interrupted:
                os_error = None
            else:
                os_error = exc if isinstance(exc, OSError) else _probe_write(self.root)
            shutil.rmtree(tmp, ignore_errors=True)
            if os_error is not None:
                where = (os_error.filename if os_error is exc else None) or tmp
                raise self._save_failed(step, Path(where), os_error) from exc
            if interrupt.abandoned and not isinstance(exc, KeyboardInterrupt):
                raise KeyboardInterrupt from exc
            raise
        self.apply_retention()
        return final

    def _save_failed(self, step: int, where: Path, exc: OSError) -> ReinforgeError:
        """A full disk, a quota, a permission change: name the path and the OS error, and what is still safe."""
        latest = self.latest_path()
        kept = f"the previous checkpoint {latest} is intact" if latest else "no earlier checkpoint exists"
        return ReinforgeError(
            f"saving checkpoint step {step} failed at {where}: {exc.strerror or exc} (errno {exc.errno}); the partial "
            f"save was removed and {kept}. The run stopped; free space or fix the folder's permissions, then run the "
            "same command again to resume"
        )

    def _publish(self, tmp: Path, final: Path) -> None:
        """Rename `tmp` to `final`; an existing `final` (the step saved again) is moved aside first."""
        replaced = None
        if final.exists():
            # Named like a temporary folder, so a crash between the renames leaves nothing resume would pick.
            replaced = self.root / f"{tmp.name}_replaced"
            shutil.rmtree(replaced, ignore_errors=True)
            os.replace(final, replaced)
        os.replace(tmp, final)
        _fsync_dir(self.root)
        if replaced is not None:
            shutil.rmtree(replaced, ignore_errors=True)

    # ----------------------------------------------------------------- retention
    def apply_retention(self) -> list[Path]:
        """Delete the checkpoints `keep_top_k` does not keep; returns the deleted folders."""
        k = self.config.keep_top_k
        checkpoints = self.checkpoints()
        if k is None or len(checkpoints) <= k:
            return []
        keep = set(self._ranked(checkpoints)[:k])
        keep.add(max(checkpoints))  # the latest: resume must find it
        removed = []
        for step, path in checkpoints.items():
            if step in keep:
                continue
            # Renamed first, so a crash halfway through the delete leaves a tmp folder, not a broken step_N.
            doomed = self.root / f"tmp_step_{step}_deleting"
            shutil.rmtree(doomed, ignore_errors=True)
            os.replace(path, doomed)
            shutil.rmtree(doomed, ignore_errors=True)
            removed.append(path)
        return removed

    def _ranked(self, checkpoints: dict[int, Path]) -> list[int]:
        """Steps from best to worst: by metric when one is configured (missing last), newer first on ties."""
        if self.metric_key is None:
            return sorted(checkpoints, reverse=True)
        sign = 1.0 if self.config.higher_is_better else -1.0

        def key(step: int) -> tuple[int, float, int]:
            value = load_training_info(checkpoints[step]).get("metrics", {}).get(self.metric_key)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                return (1, 0.0, -step)
            return (0, -sign * float(value), -step)

        return sorted(checkpoints, key=key)
