"""The JSONL logger: the run's metrics as plain lines any tool can read (and `reinforge plot` draws).

Layout under the run's log directory:

    metrics.jsonl            one object per `log` call: {"step": N, "train/reward_mean": ..., ...}
    samples/step_{N}.jsonl   one object per logged sample (prompt, response, reward, ...)
    params.json              the run's resolved config (`log_config`)

Every line is flushed as it is written, so a crashed run keeps every step it finished. The
files are opened for appending: a resumed run continues them, and a step that is logged
again after a resume appears twice (readers such as `reinforge.plotting` keep the last one).
Values are strict JSON: NaN and infinities are written as null.
"""

from __future__ import annotations

import json
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

    def close(self) -> None:
        if self._metrics_file is not None:
            self._metrics_file.close()
            self._metrics_file = None
