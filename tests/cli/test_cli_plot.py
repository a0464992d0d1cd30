"""`reinforge plot` and `reinforge.plotting`: charts from a synthetic metrics.jsonl, errors for missing runs."""

from __future__ import annotations

import json

import pytest

from reinforge.cli.main import main
from reinforge.core.errors import ReinforgeError

pytest.importorskip("matplotlib", reason="plotting needs `pip install 'reinforge[plot]'`")

from reinforge.plotting import plot_run, read_metrics  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_run(folder, steps=6, *, validation=True, lengths=True, timing=True):
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "metrics.jsonl").open("w") as f:
        for step in range(1, steps + 1):
            record = {"step": step, "train/reward_mean": step / steps, "train/accuracy": step / (2 * steps), "train/loss": 1 / step}
            if lengths:
                record |= {"train/response_length_mean": 20.0 + step, "train/response_length_max": 40.0 + step}
            if timing:
                record |= {"timing/generation": 1.0, "timing/training": 0.5, "timing/refit": 0.1, "timing/total": 1.7}
            f.write(json.dumps(record) + "\n")
            if validation and step % 2 == 0:  # validation logged in a separate call for the same step
                f.write(json.dumps({"step": step, "val/accuracy": step / 10, "val/pass@1": step / 12}) + "\n")
    return folder


def test_all_charts_are_drawn(tmp_path):
    run = write_run(tmp_path / "run")
    written = plot_run(run)
    assert [p.name for p in written] == ["reward.png", "validation.png", "response_length.png", "step_time.png"]
    for path in written:
        assert path.parent == run / "plots"
        assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 5000


def test_missing_metrics_skip_their_chart(tmp_path):
    run = write_run(tmp_path / "run", validation=False, lengths=False, timing=False)
    assert [p.name for p in plot_run(run, tmp_path / "out")] == ["reward.png"]
    assert (tmp_path / "out" / "reward.png").is_file()


def test_records_of_a_step_merge_and_a_truncated_last_line_is_skipped(tmp_path):
    run = write_run(tmp_path / "run", steps=2)
    with (run / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"step": 2, "train/reward_mean": 0.99, "train/loss": None}) + "\n")  # logged again after a resume
        f.write('{"step": 3, "train/rew')  # a crash mid-write
    table = read_metrics(run)
    assert list(table) == [1, 2]
    assert table[2]["train/reward_mean"] == 0.99  # the later record wins
    assert table[2]["val/accuracy"] == 0.2 and table[2]["train/loss"] == 0.5  # null does not erase a value


def test_a_corrupt_line_in_the_middle_names_its_line(tmp_path):
    run = write_run(tmp_path / "run", steps=1, validation=False)
    text = (run / "metrics.jsonl").read_text()
    (run / "metrics.jsonl").write_text("not json\n" + text)
    with pytest.raises(ReinforgeError, match=r"metrics.jsonl:1 is not a metrics record"):
        read_metrics(run)


def test_empty_or_missing_metrics_say_what_to_do(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReinforgeError, match=r"no metrics.jsonl in .*jsonl logger"):
        plot_run(tmp_path / "empty")
    (tmp_path / "empty" / "metrics.jsonl").write_text("")
    with pytest.raises(ReinforgeError, match="holds no metrics yet"):
        plot_run(tmp_path / "empty")


def test_cli_writes_the_charts_and_lists_them(tmp_path, capsys):
    run = write_run(tmp_path / "run")
    assert main(["plot", str(run), "--out", str(tmp_path / "charts")]) == 0
    out = capsys.readouterr().out
    assert "reward.png" in out and "step_time.png" in out
    assert sorted(p.name for p in (tmp_path / "charts").iterdir()) == [
        "response_length.png", "reward.png", "step_time.png", "validation.png"
    ]


def test_cli_missing_run_dir_exits_1_with_a_message(tmp_path, capsys):
    assert main(["plot", str(tmp_path / "nowhere")]) == 1
    captured = capsys.readouterr()
    assert "run directory" in captured.err and "does not exist" in captured.err
    assert "Traceback" not in captured.err


def test_idle_times_are_not_stacked_as_phases(tmp_path):
    from reinforge.plotting import _step_time

    run = write_run(tmp_path / "run", steps=2)
    with (run / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"step": 2, "timing/generation_idle": 0.7, "timing/training_idle": 1.2}) + "\n")
    fig = _step_time(read_metrics(run))
    labels = [text.get_text() for text in fig.axes[0].get_legend().get_texts()]
    assert sorted(labels) == ["generation", "refit", "total", "training"]
    stacked = max(patch.get_y() + patch.get_height() for patch in fig.axes[0].patches)
    assert stacked == pytest.approx(1.6)  # 1.0 + 0.1 + 0.5: the idle times are not on the bar
