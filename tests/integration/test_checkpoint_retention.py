"""keep_top_k ranks a checkpoint only by the validation of its own step: a checkpoint saved between
validations carries no stale score, so it can never push out the validated best."""

from __future__ import annotations

import pytest

from reinforge.core.checkpoint import load_training_info
from reinforge.core.errors import ReinforgeError
from reinforge.core.load import load_config
from reinforge.trainer import Trainer
from tests.integration.grpo_helpers import CPU_RECIPE, tiny_overrides

pytestmark = pytest.mark.integration


def test_only_checkpoints_validated_at_their_own_step_are_ranked(tiny_model_dir, tmp_path):
    extra = (
        "checkpointing.save_period=1",
        "checkpointing.keep_top_k=1",
        "checkpointing.metric_name=val:accuracy",
        "grpo.val_period=2",
        "grpo.val_at_end=false",
    )
    trainer = Trainer.from_config(load_config(CPU_RECIPE, tiny_overrides(tiny_model_dir, tmp_path, steps=3, extra=extra)))
    trainer.fit()
    ckpt = tmp_path / "ckpt"
    # Step 2 is the only validated checkpoint (the best by definition), step 3 the latest; step 1 is gone.
    assert sorted(p.name for p in ckpt.iterdir()) == ["step_2", "step_3"]
    validated = load_training_info(ckpt / "step_2")["metrics"]
    # the algorithm's own validation metrics, and the environment's under val/env/
    assert set(k for k in validated if k.startswith("val/") and not k.startswith("val/env/")) == set(
        trainer.algorithm.validation_metrics
    )
    assert validated["val/env/accuracy"] == validated["val/accuracy"]  # the math env's mean reward is its accuracy
    assert not any(k.startswith("val/") for k in load_training_info(ckpt / "step_3")["metrics"])


def test_a_metric_name_the_algorithm_never_logs_fails_before_training(tiny_model_dir, tmp_path):
    extra = ("checkpointing.metric_name=val:acuracy",)
    trainer = Trainer.from_config(load_config(CPU_RECIPE, tiny_overrides(tiny_model_dir, tmp_path, steps=1, extra=extra)))
    with pytest.raises(ReinforgeError, match=r"'val:acuracy' is never logged .*val:accuracy, val:pass@1, val:response_length_mean"):
        trainer.fit()
    assert trainer.step == 0 and not list((tmp_path / "ckpt").iterdir())
