"""A run built from third-party parts — the `centred_rank` advantage estimator and the `plain_torch`
generation backend under examples/third_party/, both registered by its plugins.toml — through the
public API only (`import reinforge`)."""

from __future__ import annotations

import sys
from pathlib import Path

import reinforge as rf

THIRD_PARTY = Path(__file__).resolve().parents[2] / "examples" / "third_party"
if str(THIRD_PARTY) not in sys.path:
    sys.path.insert(0, str(THIRD_PARTY))

from rank_advantages import CentredRank  # noqa: E402, F401 - re-exported for the tests


def length_reward(prompt: str, response: str, **metadata: object) -> float:
    """A reward that varies a lot between samples (so advantages are not all zero)."""
    return float(len(response) % 7)


def third_party_trainer(model_dir: Path, out: Path, cluster: rf.ClusterConfig | None = None) -> rf.Trainer:
    return rf.Trainer(
        algorithm=rf.GRPO(
            rf.GRPOConfig(num_prompts_per_step=4, num_generations_per_prompt=4, advantage_estimator="centred_rank")
        ),
        policy=rf.backends.DTensorTraining(
            str(model_dir), lr=1e-3, train_global_batch_size=8, train_micro_batch_size=4, max_total_sequence_length=96
        ),
        generation=rf.backends.Generation("plain_torch", max_new_tokens=12),
        environment=length_reward,
        train_data=rf.data.arithmetic_problems(num_samples=40),
        data=rf.DataConfig(prompt_file=None, max_input_seq_length=64),
        loop=rf.LoopConfig(max_steps=2, seed=3, checkpoint_dir=str(out / "ckpt")),
        loggers=["jsonl"],
        log_dir=str(out / "logs"),
        cluster=cluster,
        registry=rf.Registry.create(project_file=THIRD_PARTY / "plugins.toml"),
    )
