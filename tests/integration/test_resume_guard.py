"""Resume refuses another run's checkpoint (naming what differs) unless checkpointing.resume=force,
says where it resumes from, and starts over with checkpointing.resume=false."""

from __future__ import annotations

import pytest

from reinforge.core.errors import ReinforgeError
from reinforge.core.load import load_config
from reinforge.trainer import Trainer
from tests.integration.grpo_helpers import CPU_RECIPE, tiny_overrides

pytestmark = pytest.mark.integration


def trainer(model_dir, out, steps, *extra):
    config = load_config(CPU_RECIPE, tiny_overrides(model_dir, out, steps=steps, extra=("checkpointing.save_period=1", *extra)))
    return Trainer.from_config(config)


def test_another_runs_checkpoint_is_refused_unless_forced(tiny_model_dir, tmp_path, capsys):
    trainer(tiny_model_dir, tmp_path, 1).fit()
    capsys.readouterr()

    other = trainer(tiny_model_dir, tmp_path, 2, "grpo.normalize_rewards=false", "loss_fn.ratio_clip_max=0.3")
    with pytest.raises(ReinforgeError) as refused:
        other.fit()
    message = str(refused.value)
    assert f"{tmp_path / 'ckpt' / 'step_1'} belongs to another run: " in message
    assert "algorithm_settings.normalize_rewards: true (checkpoint) vs false (this run)" in message
    assert "loss_fn.ratio_clip_max: 0.28 (checkpoint) vs 0.3 (this run)" in message
    assert "checkpointing.resume=force" in message
    assert other.step == 0

    forced = trainer(tiny_model_dir, tmp_path, 2, "grpo.normalize_rewards=false", "loss_fn.ratio_clip_max=0.3",
                     "checkpointing.resume=force")
    forced.fit()
    assert forced.step == 2
    assert f"resuming from step 1 of {tmp_path / 'ckpt'}; pass checkpointing.resume=false to start over" in capsys.readouterr().err


def test_resume_false_starts_over(tiny_model_dir, tmp_path, capsys):
    trainer(tiny_model_dir, tmp_path, 2).fit()
    again = trainer(tiny_model_dir, tmp_path, 1, "checkpointing.resume=false")
    again.fit()
    assert again.step == 1 and "resuming from" not in capsys.readouterr().err
