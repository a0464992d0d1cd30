"""The README's Python quickstart is examples/quickstart.py, and it runs: GRPO composed from objects,
with a plain reward function and in-memory records; then the same script with the generator
swapped in its one line (vLLM: in the vLLM test stage, .venv-vllm)."""

from __future__ import annotations

import re
import runpy

import pytest

from tests.integration.grpo_helpers import REPO

pytestmark = pytest.mark.integration
SCRIPT = REPO / "examples" / "quickstart.py"


def readme_python_block() -> str:
    """The first ```python block of the README's "Python API" section."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Python API") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_opens_its_python_section_with_the_quickstart_script():
    script = SCRIPT.read_text()
    assert readme_python_block() == script
    assert len(script.strip().splitlines()) <= 17


def run_quickstart(tmp_path, monkeypatch, model_dir, *, swap: str | None = None) -> dict:
    """Run the script as written, on the tiny model for 2 steps (and, with `swap`, another generator line)."""
    text = SCRIPT.read_text()
    assert text.count('"results/models/small-arith"') == 1 and text.count("max_steps=20") == 1
    text = text.replace('"results/models/small-arith"', repr(str(model_dir))).replace("max_steps=20", "max_steps=2")
    if swap is not None:
        assert text.count("rf.backends.HFGeneration(") == 1
        text = text.replace("rf.backends.HFGeneration(", swap)
    monkeypatch.chdir(tmp_path)
    script = tmp_path / "quickstart.py"
    script.write_text(text)
    return runpy.run_path(str(script), run_name="__main__")


def check_two_steps_ran(trainer, *, logprob_atol: float = 1e-3) -> None:
    metrics = trainer.last_metrics
    assert trainer.step == 2
    assert metrics["train/num_rollouts"] == 32.0  # 8 prompts x 4 samples
    assert metrics["train/optimizer_steps"] == 1.0  # 32 rollouts / train_global_batch_size 32
    assert "train/loss" in metrics and "refit/seconds" in metrics  # step 2 refit the generator after step 1
    # The logprobs of the generator and the trainer agree after the refit: the generator really holds the new weights.
    assert metrics["train/token_mult_prob_error"] == pytest.approx(1.0, abs=logprob_atol)


def test_quickstart_trains_grpo_on_cpu(tiny_model_dir, tmp_path, monkeypatch):
    namespace = run_quickstart(tmp_path, monkeypatch, tiny_model_dir)
    trainer, reward = namespace["trainer"], namespace["reward"]
    check_two_steps_ran(trainer)
    # The plain function is the environment: it scores what it is given, with the record's fields as keywords.
    env = trainer.run.environment
    step = env.step(
        [[{"role": "user", "content": "What is 2 + 3?"}, {"role": "assistant", "content": "So \\boxed{5}."}]] * 2,
        [{"problem": "What is 2 + 3?", "answer": "5", "index": 0}, {"problem": "What is 2 + 3?", "answer": "6", "index": 1}],
    )
    assert step.rewards == [1.0, 0.0] and step.done == [True, True]
    assert reward("What is 2 + 3?", "\\boxed{5}", answer="5") == 1.0
