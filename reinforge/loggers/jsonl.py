"""The JSONL logger: the run's metrics as plain lines any tool can read (and `reinforge plot` draws).

Layout under the run's log directory:

    metrics.jsonl            one object per `log` call: {"step": N, "train/reward_mean": ..., ...}
    samples/step_{N}.jsonl   one object per logged sample (prompt, response, reward, ...)
    params.json              the run's resolved config (`log_config`)

Every line is flushed as it is written, so a crashed run keeps every step it finished. The
files are opened for appending: a resumed run continues them. On resume from step N the trainer
calls `resume_at(N, ...)`: rows and sample files of steps after N (logged after the last
checkpoint, and about to be logged again) are removed, so no step appears twice.
Values are strict JSON: NaN and infinities are written as null.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from reinforge.core.run_config import LoggerConfig
from reinforge.loggers.values import jsonable

METRICS_FILE = "metrics.jsonl"
SAMPLES_DIR = "samples"
PARAMS_FILE = "params.json"


def _dumps(obj: Any) -> str:
    return json.dumps(jsonable(obj), allow_nan=False, ensure_ascii=False)


class JsonlLogger:
    """Appends metrics to `<log_dir>/metrics.jsonl`; samples and params go beside it."""

    def __init__(self, config: LoggerConfig, log_dir: Path, *, run_name: str, total_steps: int | None) -> None:
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.log_dir / METRICS_FILE
        self._metrics_file: IO[str] | None = self.metrics_path.open("a", encoding="utf-8")

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        if self._metrics_file is None:
            raise RuntimeError("JsonlLogger.log called after close()")
        record = {"step": step, **{k: v for k, v in metrics.items() if k != "step"}}  # the step argument wins
        self._metrics_file.write(_dumps(record) + "\n")
        self._metrics_file.flush()

    def log_samples(self, samples: list[dict[str, Any]], step: int) -> None:
        """Append each sample as one line to `samples/step_{step}.jsonl` (train and val samples of a step share it)."""
        if not samples:
            return
        folder = self.log_dir / SAMPLES_DIR
        folder.mkdir(exist_ok=True)
        with (folder / f"step_{step}.jsonl").open("a", encoding="utf-8") as f:
            f.writelines(_dumps(sample) + "\n" for sample in samples)

    def log_config(self, config: Mapping[str, Any]) -> None:
        """Write the run's config to `params.json` (replaced, not appended: a resumed run's config wins)."""
        path = self.log_dir / PARAMS_FILE
        path.write_text(json.dumps(jsonable(config), indent=2, allow_nan=False, ensure_ascii=False) + "\n", encoding="utf-8")

    def resume_at(self, step: int, checkpoint_metrics: Mapping[str, Any]) -> None:
        """Drop what was logged after `step`; restore step `step`'s row from the checkpoint if it never made it to disk."""
        if self._metrics_file is not None:
            self._metrics_file.close()
        kept, have_step = [], False
        if self.metrics_path.is_file():
            for line in self.metrics_path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    row_step = json.loads(line)["step"]
                except (ValueError, KeyError, TypeError):
                    continue  # a line torn by a kill mid-write
                if isinstance(row_step, int) and row_step <= step:
                    kept.append(line)
                    have_step = have_step or row_step == step
        if not have_step and checkpoint_metrics:
            # A crash between the checkpoint's save and the log line: the checkpoint holds the step's metrics.
            kept.append(_dumps({"step": step, **{k: v for k, v in checkpoint_metrics.items() if k != "step"}}))
        tmp = self.metrics_path.with_name(self.metrics_path.name + ".tmp")
        tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
        os.replace(tmp, self.metrics_path)
        for sample_file in (self.log_dir / SAMPLES_DIR).glob("step_*.jsonl"):
            match = re.fullmatch(r"step_(\d+)\.jsonl", sample_file.name)
            if match and int(match.group(1)) > step:
                sample_file.unlink()
        self._metrics_file = self.metrics_path.open("a", encoding="utf-8")

    def close(self) -> None:
        if self._metrics_file is not None:
            self._metrics_file.close()
            self._metrics_file = None
