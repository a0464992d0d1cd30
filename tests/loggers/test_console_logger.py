"""The console logger: one concise line per step when stdout is not a terminal, a bar when it is."""

from __future__ import annotations

import io

from rich.console import Console

from reinforge.core.run_config import LoggerConfig
from reinforge.loggers.console import ConsoleLogger, format_seconds


def test_non_tty_prints_one_concise_line_per_step(tmp_path, capsys):
    logger = ConsoleLogger(LoggerConfig(), tmp_path, run_name="demo", total_steps=10)
    assert not logger.interactive  # pytest captures stdout: not a terminal
    many = {f"train/extra_{i}": float(i) for i in range(40)}
    logger.log({"train/reward_mean": 0.5, "train/accuracy": 0.25, "train/loss": 0.125, "timing/total": 2.0, **many}, step=1)
    logger.log({"train/reward_mean": 0.75, "timing/total": 4.0}, step=2)
    logger.log({"val/accuracy": 0.5, "val/pass@1": 0.5}, step=2)
    logger.close()

    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("step 1/10")
    assert "reward 0.500" in lines[0] and "acc 0.250" in lines[0] and "loss 0.125" in lines[0]
    assert "2.0s/step" in lines[0] and "eta 18.0s" in lines[0]  # 9 steps left x 2 s
    assert "extra_" not in lines[0]  # the other 40 metrics belong to the file loggers
    assert "eta 24.0s" in lines[1]  # mean of 2 s and 4 s, 8 steps left
    assert "val accuracy 0.500" in lines[2] and "pass@1 0.500" in lines[2]
    assert "\x1b[" not in "".join(lines)  # no colour codes or redraws in a log file


def test_unknown_total_prints_no_eta(tmp_path, capsys):
    logger = ConsoleLogger(LoggerConfig(), tmp_path, run_name="demo", total_steps=None)
    logger.log({"train/reward_mean": 1.0, "timing/total": 1.0}, step=3)
    logger.close()
    line = capsys.readouterr().out.strip()
    assert line.startswith("step 3 ") and "eta" not in line


def test_terminal_mode_draws_a_progress_bar_with_the_stats(tmp_path):
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=160, color_system=None)
    logger = ConsoleLogger(LoggerConfig(), tmp_path, run_name="demo", total_steps=4, console=console)
    assert logger.interactive
    logger.log({"train/reward_mean": 0.5, "train/accuracy": 0.25, "timing/total": 3.0}, step=1)
    logger.log({"val/accuracy": 0.75}, step=1)
    logger.close()

    text = out.getvalue()
    assert "1/4" in text and "reward 0.500" in text and "eta 9.0s" in text
    assert "step 1 val: accuracy 0.750" in text


def test_format_seconds():
    assert format_seconds(3.21) == "3.2s"
    assert format_seconds(125) == "2m05s"
    assert format_seconds(3723) == "1:02:03"
