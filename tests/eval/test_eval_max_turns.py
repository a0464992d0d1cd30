"""`reinforge eval` runs multi-turn environments for `eval.max_turns` turns (it always ran one)."""

from __future__ import annotations

import pytest

from reinforge.core.errors import ReinforgeError
from reinforge.core.load import load_config
from reinforge.eval import runner
from reinforge.eval.config import EvalConfig
from reinforge.rollouts.service import RolloutService
from tests.integration.grpo_helpers import REPO

ARITH = REPO / "reinforge" / "eval" / "arith-cpu.yaml"


def test_max_turns_below_one_is_a_config_error():
    with pytest.raises(ReinforgeError, match=r"eval\.max_turns"):
        load_config(ARITH, ["eval.max_turns=0"], schema=EvalConfig)


def test_eval_rolls_out_max_turns_turns(tiny_model_dir, monkeypatch):
    seen = []

    class Recording(RolloutService):
        def collect(self, prompts, sampling, *, max_turns=1):
            result = super().collect(prompts, sampling, max_turns=max_turns)
            seen.append((max_turns, result.turns))
            return result

    monkeypatch.setattr(runner, "RolloutService", Recording)
    config = load_config(ARITH, [
        f"generation.model_name={tiny_model_dir}", "generation.max_new_tokens=6", "generation.max_total_sequence_length=700",
        "data.dataset=sliding_puzzle", "data.dataset_cfg={split: validation, num_samples: 2}", "data.max_input_seq_length=400",
        "data.system_prompt=null", "env.name=sliding_puzzle", "env.env_cfg=null",
        "eval.max_turns=3", "eval.num_tests_per_prompt=2", "eval.k_value=1", "eval.metric=avg@k",
    ], schema=EvalConfig)
    metrics = runner.evaluate(config)
    assert metrics["num_samples"] == 4.0
    assert [m for m, _ in seen] == [3]
    assert max(turns for _, result_turns in seen for turns in result_turns) == 3  # a random model never solves it
