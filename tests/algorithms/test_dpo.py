"""DPO: pairs stay together, ranked completions, and the CPU recipe's preference accuracy rises."""

from __future__ import annotations

import json

import pytest

from reinforge.data.preference_records import to_pair
from reinforge.core.errors import ConfigError, ReinforgeError
from reinforge.core.load import load_config
from reinforge.plotting import read_metrics
from reinforge.trainer import Trainer
from tests.integration.grpo_helpers import REPO

RECIPE = REPO / "examples" / "configs" / "dpo-arith-cpu.yaml"


def test_ranked_completions_give_best_versus_worst():
    chosen, rejected = to_pair({"context": "Q?", "completions": [{"rank": 2, "completion": "bad"}, {"rank": 0, "completion": "good"}, {"rank": 1, "completion": "ok"}]})
    assert chosen[-1]["content"] == "good" and rejected[-1]["content"] == "bad" and chosen[0]["content"] == "Q?"
    with pytest.raises(ReinforgeError, match="key 'rejected': the value is missing"):
        to_pair({"prompt": "Q?", "chosen": "a"})


def test_message_list_responses_and_whole_conversations():
    user = {"role": "user", "content": "Q?"}
    chosen, rejected = to_pair({"prompt": [user], "chosen": [{"role": "assistant", "content": "A"}], "rejected": "B"})
    assert chosen == [user, {"role": "assistant", "content": "A"}] and rejected == [user, {"role": "assistant", "content": "B"}]
    chosen, _ = to_pair({"prompt": "Q?", "chosen": [user, {"role": "assistant", "content": "A"}], "rejected": [user, {"role": "assistant", "content": "B"}]})
    assert chosen == [user, {"role": "assistant", "content": "A"}]  # the repeated prompt is not doubled


def test_odd_micro_batch_would_split_a_pair(tiny_model_dir):
    with pytest.raises(ConfigError, match="must be even"):
        load_config(RECIPE, [f"policy.model_name={tiny_model_dir}", "policy.train_micro_batch_size=1", "policy.train_global_batch_size=8"])


@pytest.mark.integration
def test_dpo_cpu_recipe_raises_preference_accuracy(tiny_model_dir, tmp_path):
    overrides = [
        f"policy.model_name={tiny_model_dir}",
        "dpo.max_num_steps=20",
        "dpo.val_period=20",
        "policy.optimizer.lr=1e-3",
        f"logger.log_dir={tmp_path / 'logs'}",
        "logger.loggers=[jsonl]",
        f"checkpointing.checkpoint_dir={tmp_path / 'ckpt'}",
    ]
    Trainer.from_config(load_config(RECIPE, overrides)).fit()
    table = read_metrics(tmp_path / "logs")  # step -> that step's metrics
    val = {step: row for step, row in table.items() if "val/accuracy" in row}
    print({step: (row["val/accuracy"], row["val/preference_loss"]) for step, row in val.items()})
    assert list(val) == [0, 20]  # val_at_start and val_period=20
    assert val[0]["val/preference_loss"] == pytest.approx(0.6931, abs=1e-3)  # policy == reference: ln 2
    assert val[20]["val/accuracy"] > val[0]["val/accuracy"] + 0.3


@pytest.mark.integration
def test_dpo_trains_on_a_preference_file(tiny_model_dir, tmp_path):
    """The generic file reader end to end: JSONL pairs (message lists) -> preference_jsonl -> two DPO steps."""
    user = lambda i: [{"role": "user", "content": f"What is {i} + 1?"}]  # noqa: E731
    answer = lambda text: [{"role": "assistant", "content": text}]  # noqa: E731
    rows = [{"prompt": user(i), "chosen": answer(f"{i + 1}"), "rejected": answer(f"{i + 3}")} for i in range(12)]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    overrides = [
        f"policy.model_name={tiny_model_dir}",
        "dpo.max_num_steps=2",
        "policy.train_global_batch_size=4",
        "policy.train_micro_batch_size=4",
        "data.dataset=preference_jsonl",
        f"data.dataset_cfg={{path: {path}, max_samples: 8, cache_dir: {tmp_path / 'hf'}}}",
        "data.val_dataset=preference_jsonl",
        f"data.val_dataset_cfg={{path: {path}, seed: 1, max_samples: 4, cache_dir: {tmp_path / 'hf'}}}",
        f"logger.log_dir={tmp_path / 'logs'}",
        "logger.loggers=[jsonl]",
        "checkpointing.enabled=false",
    ]
    Trainer.from_config(load_config(RECIPE, overrides)).fit()
    table = read_metrics(tmp_path / "logs")
    assert list(table) == [0, 1, 2]
    assert table[0]["val/preference_loss"] == pytest.approx(0.6931, abs=1e-3)
    assert [step for step, row in table.items() if "train/accuracy" in row] == [1, 2]
