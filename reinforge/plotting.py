"""PNG charts of a run, drawn from its `metrics.jsonl` (what `reinforge plot RUN_DIR` calls).

Charts, each drawn only when its metrics were logged:

    reward.png           train/reward_mean (and train/accuracy on a second axis)
    validation.png       every val/* metric
    response_length.png  train/response_length_mean and _max
    step_time.png        the timing/* phases stacked per step (timing/total as a line)

Records of one step are merged, the later value winning, so a step logged in two calls
(train, then validation) or logged again after a resume is read once. Matplotlib is used
through `Figure` objects only (no pyplot), so plotting changes no global backend and works
without a display.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reinforge.core.errors import ReinforgeError, read_user_text

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

METRICS_FILE = "metrics.jsonl"
REWARD, ACCURACY = "train/reward_mean", "train/accuracy"
LENGTHS = ("train/response_length_mean", "train/response_length_max")
TOTAL_TIME = "timing/total"
# Phases stack in the order a GRPO step runs them; phases not listed follow, alphabetically.
PHASE_ORDER = ("generation", "refit", "reward", "logprobs", "training", "checkpoint", "validation")

Table = dict[int, dict[str, float]]  # step -> metric -> value


def metrics_path(run_dir: str | os.PathLike[str]) -> Path:
    """`RUN_DIR/metrics.jsonl` (a path to the .jsonl file itself is accepted too)."""
    path = Path(run_dir)
    if path.is_file():
        return path
    if not path.exists():
        raise ReinforgeError(
            f"run directory '{path}' does not exist; pass the run's log directory "
            "(logger.log_dir in its config, the folder holding metrics.jsonl)"
        )
    file = path / METRICS_FILE
    if not file.is_file():
        raise ReinforgeError(
            f"no {METRICS_FILE} in '{path}'; it is written by the jsonl logger: train with "
            "'logger.loggers=[console,jsonl]' and point `reinforge plot` at logger.log_dir"
        )
    return file


def read_metrics(run_dir: str | os.PathLike[str]) -> Table:
    """Every step's metrics (numbers only), merged by step; a truncated last line (a crash mid-write) is skipped."""
    file = metrics_path(run_dir)
    lines = read_user_text(file, "metrics file").splitlines()
    table: Table = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            step = int(record.pop("step"))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            if number == len(lines):
                continue
            raise ReinforgeError(f"{file}:{number} is not a metrics record ({line[:80]!r}); fix or delete that line") from None
        row = table.setdefault(step, {})
        for key, value in record.items():
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                row[key] = float(value)
    if not table:
        raise ReinforgeError(f"{file} holds no metrics yet; plot again once the run has logged a step")
    return dict(sorted(table.items()))


def series(table: Table, key: str) -> tuple[list[int], list[float]]:
    """The steps where `key` was logged and its values there."""
    steps = [s for s, row in table.items() if key in row]
    return steps, [table[s][key] for s in steps]


def _keys(table: Table, prefix: str) -> list[str]:
    return sorted({k for row in table.values() for k in row if k.startswith(prefix)})


# ----------------------------------------------------------------- charts
def _new_figure(title: str) -> tuple[Figure, Axes]:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)
    return fig, ax


def _line(ax: Axes, table: Table, key: str, label: str | None = None, **style: Any) -> Any:
    steps, values = series(table, key)
    # Sparse series (validation every N steps) need markers to be visible at all.
    marker = "o" if len(steps) < 30 else None
    return ax.plot(steps, values, label=label or key, marker=marker, markersize=3, **style)[0]


def _reward(table: Table) -> Figure | None:
    if not (series(table, REWARD)[0] or series(table, ACCURACY)[0]):
        return None
    fig, ax = _new_figure("reward")
    handles = []
    if series(table, REWARD)[0]:
        handles.append(_line(ax, table, REWARD, color="tab:blue"))
        ax.set_ylabel("reward")
    if series(table, ACCURACY)[0]:
        acc_ax = ax.twinx() if handles else ax  # rewards may not live in [0, 1]; accuracy does
        handles.append(_line(acc_ax, table, ACCURACY, color="tab:orange"))
        acc_ax.set_ylabel("accuracy")
    ax.legend(handles=handles, loc="best")
    return fig


def _validation(table: Table) -> Figure | None:
    keys = _keys(table, "val/")
    if not keys:
        return None
    fig, ax = _new_figure("validation")
    # Rates (accuracy, pass@k) share an axis; anything on another scale (lengths, rewards) gets a second one.
    rates = [k for k in keys if all(0.0 <= v <= 1.0 for v in series(table, k)[1])]
    others = [k for k in keys if k not in rates]
    colors = {k: f"C{i}" for i, k in enumerate(keys)}  # one colour cycle across both axes
    handles = [_line(ax, table, k, color=colors[k]) for k in rates or others]
    if rates and others:
        other_ax = ax.twinx()
        handles += [_line(other_ax, table, k, color=colors[k], linestyle="--") for k in others]
    ax.legend(handles=handles, loc="best")
    return fig


def _lengths(table: Table) -> Figure | None:
    keys = [k for k in LENGTHS if series(table, k)[0]]
    if not keys:
        return None
    fig, ax = _new_figure("response length")
    for key in keys:
        _line(ax, table, key)
    ax.set_ylabel("tokens")
    ax.legend(loc="best")
    return fig


def _step_time(table: Table) -> Figure | None:
    order = {f"timing/{name}": i for i, name in enumerate(PHASE_ORDER)}
    # `*_idle` are not phases but what is left of the total per side: stacking them would count time twice
    stacked = (k for k in _keys(table, "timing/") if k != TOTAL_TIME and not k.endswith("_idle"))
    phases = sorted(stacked, key=lambda k: (order.get(k, len(order)), k))
    if not phases and not series(table, TOTAL_TIME)[0]:
        return None
    fig, ax = _new_figure("step time by phase")
    steps = [s for s, row in table.items() if any(k in row for k in [*phases, TOTAL_TIME])]
    bottom = [0.0] * len(steps)
    for i, key in enumerate(phases):  # one stacked bar per step: steps are discrete, no interpolation
        heights = [table[s].get(key, 0.0) for s in steps]
        ax.bar(steps, heights, bottom=bottom, width=0.9, color=f"C{i}", label=key.removeprefix("timing/"), linewidth=0)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    if series(table, TOTAL_TIME)[0]:
        _line(ax, table, TOTAL_TIME, label="total", color="black", linestyle="--")
    ax.set_ylabel("seconds")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")  # outside: the stack fills the plot
    return fig


CHARTS = {"reward": _reward, "validation": _validation, "response_length": _lengths, "step_time": _step_time}


def plot_run(run_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """Draw the charts of the run in `run_dir` into `out_dir` (default `run_dir/plots`); return the PNGs written."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ReinforgeError("plotting needs matplotlib; install it with: pip install 'reinforge[plot]'") from None
    table = read_metrics(run_dir)
    source = metrics_path(run_dir)
    target = Path(out_dir) if out_dir is not None else source.parent / "plots"
    if target.exists() and not target.is_dir():
        raise ReinforgeError(f"--out '{target}' is an existing file; name a folder for the charts")
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReinforgeError(f"cannot create the chart folder '{target}': {exc.strerror or exc}; choose another --out") from None
    written = []
    for name, draw in CHARTS.items():
        fig = draw(table)
        if fig is None:
            continue
        path = target / f"{name}.png"
        fig.savefig(path, dpi=100)
        written.append(path)
    return written
