"""The TensorBoard logger: event files under `<log_dir>/tensorboard` (`tensorboard --logdir <log_dir>`).

Metric names keep their `train/`, `val/`, `timing/` prefixes, which TensorBoard turns into
one section per prefix. Samples and the config go to the Text tab. Events are flushed after
every step, so a crashed run loses nothing it logged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reinforge.core.run_config import LoggerConfig
from reinforge.loggers.values import jsonable, scalar_metrics

SUBDIR = "tensorboard"
MAX_TEXT_CHARS = 2000  # per sample field in the Text tab; full samples are in the JSONL logger


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(jsonable(value), ensure_ascii=False)
    if len(text) > MAX_TEXT_CHARS:
        text = text[:MAX_TEXT_CHARS] + " …"
    return text.replace("|", "\\|").replace("\n", "<br>")


class TensorBoardLogger:
    """Scalars, sample tables and the config, through torch's `SummaryWriter`."""

    def __init__(self, config: LoggerConfig, log_dir: Path, *, run_name: str, total_steps: int | None) -> None:
        from torch.utils.tensorboard import SummaryWriter  # imported here: torch + tensorboard are heavy

        self.directory = Path(log_dir) / SUBDIR
        self.writer = SummaryWriter(log_dir=str(self.directory))

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        for key, value in scalar_metrics(metrics).items():
            self.writer.add_scalar(key, value, global_step=step)
        self.writer.flush()

    def log_samples(self, samples: list[dict[str, Any]], step: int) -> None:
        """One markdown table per step in the Text tab (columns: the union of the samples' keys)."""
        if not samples:
            return
        columns = list(dict.fromkeys(key for sample in samples for key in sample))
        lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
        lines += ["| " + " | ".join(_cell(s.get(c, "")) for c in columns) + " |" for s in samples]
        self.writer.add_text("samples", "\n".join(lines), global_step=step)
        self.writer.flush()

    def log_config(self, config: Mapping[str, Any]) -> None:
        text = json.dumps(jsonable(config), indent=2, ensure_ascii=False)
        # Indented by four spaces: a markdown code block keeps the JSON's layout in the Text tab.
        self.writer.add_text("config", "\n".join("    " + line for line in text.splitlines()), global_step=0)
        self.writer.flush()

    def resume_at(self, step: int, checkpoint_metrics: Mapping[str, Any]) -> None:
        """Hide events after `step` (logged after the last checkpoint): TensorBoard purges them on read."""
        from torch.utils.tensorboard import SummaryWriter

        self.writer.close()
        self.writer = SummaryWriter(log_dir=str(self.directory), purge_step=step + 1)

    def close(self) -> None:
        self.writer.close()
