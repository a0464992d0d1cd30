"""Commands that used to run to the end and then lose their result, or stop with a traceback: an export
into a folder that cannot be written, an export whose base model folder is gone, an evaluation whose
samples cannot be written. Each is checked before the work starts, or keeps the work when it ends.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from reinforge.cli.main import main
from reinforge.core.load import load_config
from reinforge.trainer import Trainer
from tests.integration.grpo_helpers import CPU_RECIPE, OFFLINE_ENV, REINFORGE, tiny_overrides

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def step_1(tiny_model_dir, tmp_path_factory) -> Path:
    """A real checkpoint: one GRPO step on the tiny model."""
    out = tmp_path_factory.mktemp("trained")
    config = load_config(CPU_RECIPE, tiny_overrides(tiny_model_dir, out, steps=1, extra=("checkpointing.save_period=1",)))
    Trainer.from_config(config).fit()
    return out / "ckpt" / "step_1"


def convert(step: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [REINFORGE, "convert", f"--dcp-ckpt-path={step / 'policy'}", f"--hf-ckpt-path={out}", *extra],
        capture_output=True, text=True, env={**os.environ, **OFFLINE_ENV},
    )


def test_convert_into_a_folder_that_cannot_be_written_is_refused_before_converting(step_1, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("keep me")
    done = convert(step_1, blocker / "hf")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    flat = " ".join(done.stderr.split())
    assert f"--hf-ckpt-path '{blocker / 'hf'}' is under '{blocker}', which is a file" in flat
    assert blocker.read_text() == "keep me"


@pytest.mark.skipif(not Path("/sys").is_dir() or os.geteuid() != 0, reason="needs Linux /sys as root, where permissions do not stop writes")
def test_convert_into_a_read_only_filesystem_is_refused_before_converting(step_1):
    done = convert(step_1, Path("/sys/reinforge-export/hf"))
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "--hf-ckpt-path '/sys/reinforge-export/hf' cannot be written" in " ".join(done.stderr.split())


def test_convert_whose_base_model_folder_is_gone_names_the_key_and_the_config(step_1, tmp_path):
    config = yaml.safe_load((step_1 / "config.yaml").read_text())
    config["policy"]["model_name"] = str(tmp_path / "moved-away")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    done = convert(step_1, tmp_path / "hf", f"--config={tmp_path / 'config.yaml'}")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    flat = " ".join(done.stderr.split())
    assert f"the base model folder '{tmp_path / 'moved-away'}' (policy.model_name in {tmp_path / 'config.yaml'}) does not exist" in flat
    assert "Repo id must be" not in flat
    assert not (tmp_path / "hf").exists()


EVAL = [
    "eval.num_tests_per_prompt=2",
    "eval.k_value=2",
    "data.dataset_cfg={split: validation, num_samples: 3, num_validation_samples: 3}",
    "generation.max_new_tokens=6",
]


def test_an_evaluation_whose_samples_cannot_be_written_prints_them_and_the_metrics(tiny_model_dir, tmp_path, monkeypatch, capsys):
    """The save path is fine at start and taken away during the evaluation: the samples go to stdout."""
    from reinforge.eval import runner

    save_dir = tmp_path / "results"
    real = runner.evaluate_prompts

    def evaluate_then_lose_the_folder(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        result = real(*args, **kwargs)
        shutil.rmtree(save_dir, ignore_errors=True)
        save_dir.write_text("something else took this path while the evaluation ran")
        return result

    monkeypatch.setattr(runner, "evaluate_prompts", evaluate_then_lose_the_folder)
    save_dir.mkdir()
    rc = main(["eval", f"generation.model_name={tiny_model_dir}", *EVAL, f"eval.save_path={save_dir / 'samples.jsonl'}", "--json"])
    out = capsys.readouterr()
    assert rc == 1, out.err[-3000:]
    samples = [json.loads(line) for line in out.out.splitlines() if line.startswith('{"')]
    assert len(samples) == 6 and {"problem", "answer", "response", "reward"} <= set(samples[0])
    assert '"num_problems": 3.0' in out.out  # the metrics, printed too
    flat = " ".join(out.err.split())
    assert f"its 6 samples could not be written to eval.save_path '{save_dir / 'samples.jsonl'}'" in flat
    assert "printed to stdout above" in flat and "Traceback" not in out.err
