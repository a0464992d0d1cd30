"""Asynchronous GRPO on the Ray executor, disaggregated (`cluster.colocated: false`), on the tiny model.

The rollout producer thread calls the generation and environment worker groups while the trainer thread calls
the training group:
- at age 0 the run logs exactly the synchronous Ray run's train/, env/ and val/ metrics, step by step (validation
  pauses the producer and calls the generation group from the trainer thread);
- at age 1, with the trainer held until the next step's generation has started (so the two groups really run at
  once, whatever the machine's load), every step's groups are at most one step old (`async/age_max <= 1`),
  steps 2 and 3 exactly one, and the generation calls came from the producer thread;
- a run stopped after step 2 and resumed from its checkpoint trains the same multiset of prompts as an
  uninterrupted run (groups buffered at the stop are generated again, none skipped or trained twice);
- a generation worker killed while the producer waits on it ends `fit()` in the trainer thread with the error
  naming that worker, quickly, and the producer stops.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from reinforge.core.load import load_config
from reinforge.core.registry import Registry
from reinforge.executors.ray.worker_group import WorkerDiedError
from reinforge.trainer import Trainer
from tests.integration.grpo_helpers import CPU_RECIPE, RAY_DISAGGREGATED, read_metrics, tiny_overrides
from tests.integration.test_async_grpo import RecordingPolicy

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("one_torch_thread")]

COMMON = ("env.name=raytest_checksum", "env.env_cfg=null", "checkpointing.enabled=false", *RAY_DISAGGREGATED)
AGE_0 = ("grpo.async_grpo.enabled=true", "grpo.async_grpo.max_trajectory_age_steps=0")
AGE_1 = ("grpo.async_grpo.enabled=true", "grpo.async_grpo.max_trajectory_age_steps=1",
         "loss_fn.use_importance_sampling_correction=true", "loss_fn.truncated_importance_sampling_type=tis",
         "loss_fn.truncated_importance_sampling_ratio_max=2.0")  # fmt: skip
UNTRAINED = ("timing/", "async/", "refit/", "train/memory_")  # wall time, memory and the async accounting


def trained(row: dict[str, float]) -> dict[str, float]:
    """A metrics row without what is not a function of what was trained (and the test environment actor's pid)."""
    return {k: v for k, v in row.items() if not k.startswith(UNTRAINED) and not k.endswith("env/pid_max")}


class CountingGeneration:
    """The Ray generation proxy, counting its `generate` calls and the threads they came from."""

    def __init__(self, real: Any) -> None:
        self.real, self.calls, self.threads = real, 0, []
        self._changed = threading.Condition()

    def generate(self, batch, sampling):
        with self._changed:
            self.calls += 1
            self.threads.append(threading.current_thread().name)
            self._changed.notify_all()
        return self.real.generate(batch, sampling)

    def wait_for_calls(self, count: int) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: self.calls >= count, timeout=300), (self.calls, count)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


class HeldPolicy:
    """The Ray training proxy; `before_train(k)` runs before the k-th optimizer step (1-based)."""

    def __init__(self, real: Any, before_train: Any) -> None:
        self.real, self.before_train, self.steps = real, before_train, 0

    def train(self, batch, loss_fn, **kwargs):
        self.steps += 1
        self.before_train(self.steps)
        return self.real.train(batch, loss_fn, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def config(model_dir: Path, out: Path, registry: Registry, *extra: str, steps: int = 3):
    return load_config(CPU_RECIPE, tiny_overrides(model_dir, out, steps=steps, extra=(*COMMON, *extra)), registry)


def test_age_0_on_ray_logs_exactly_the_synchronous_ray_runs_metrics(ray_session, model_dir, registry, tmp_path):
    validation = ("grpo.val_period=2", "grpo.max_val_samples=2")
    for name, extra in (("sync", validation), ("age0", (*validation, *AGE_0))):
        Trainer.from_config(config(model_dir, tmp_path / name, registry, *extra), registry).fit()
    sync, age0 = (read_metrics(tmp_path / name / "logs") for name in ("sync", "age0"))
    assert [r["step"] for r in sync] == [r["step"] for r in age0] == [1, 2, 3]
    assert sync[0]["train/reward_std"] > 0 and "val/accuracy" in sync[1]  # the steps train; step 2 validates
    for want, got in zip(sync, age0):
        assert trained(got) == trained(want)  # bit for bit: same keys, same floats
        assert got["async/age_max"] == 0 and got["async/regenerated_groups"] == 0


def test_age_1_on_ray_overlaps_the_groups_and_bounds_the_age(ray_session, model_dir, registry, tmp_path):
    trainer = Trainer.from_config(config(model_dir, tmp_path / "age1", registry, "grpo.val_at_end=false", "policy.optimizer.lr=5.0e-2", *AGE_1), registry)
    generation = CountingGeneration(trainer.run.rollouts.generation)
    trainer.run.rollouts.generation = generation
    # step k trains once step k + 1's groups started generating: the training and generation groups work at once
    trainer.run.policy = HeldPolicy(trainer.run.policy, lambda k: generation.wait_for_calls(min(k + 1, 3)))
    trainer.fit()
    rows = read_metrics(tmp_path / "age1" / "logs")
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(r["async/age_max"] <= 1 for r in rows)
    assert [r["async/age_max"] for r in rows] == [0.0, 1.0, 1.0]
    assert all(r["async/regenerated_groups"] == 0 for r in rows)
    assert generation.calls == 3 and set(generation.threads) == {"reinforge-rollout-producer"}
    assert abs(rows[1]["train/token_mult_prob_error"] - 1.0) > 1e-3  # trained by weights a step newer than sampled


def test_a_resumed_async_run_on_ray_trains_the_same_prompts_as_an_uninterrupted_one(ray_session, model_dir, registry, tmp_path):
    saves = ("checkpointing.enabled=true", "checkpointing.save_period=2", "grpo.val_at_end=false", *AGE_1)
    trained = {}
    for name, out, steps in (("full", "full", 4), ("first", "split", 2), ("second", "split", 4)):
        trainer = Trainer.from_config(config(model_dir, tmp_path / out, registry, *saves, steps=steps), registry)
        trainer.run.policy = recording = RecordingPolicy(trainer.run.policy)
        trainer.fit()
        trained[name] = recording
    assert len(trained["first"].trained) == len(trained["second"].trained) == 2  # the second run resumed at step 3
    assert trained["first"].prompts() + trained["second"].prompts() == trained["full"].prompts()
    info = (tmp_path / "split" / "ckpt" / "step_2" / "dataloader.json").read_text()
    assert '"batch_in_epoch": 2' in info  # the saved cursor is the trained frontier, not the producer's read-ahead


def test_a_generation_worker_killed_under_the_producer_ends_fit_with_its_error(ray_session, model_dir, registry, tmp_path):
    import ray

    trainer = Trainer.from_config(config(model_dir, tmp_path / "killed", registry, "grpo.val_at_end=false", *AGE_1), registry)
    real = trainer.run.rollouts.generation

    class KilledOnStep2(CountingGeneration):
        def generate(self, batch, sampling):
            if self.calls == 1:  # the producer's second batch (step 2): its engine dies under it
                ray.kill(real.group.actors[0], no_restart=True)
            return super().generate(batch, sampling)

    generation = KilledOnStep2(real)
    trainer.run.rollouts.generation = generation
    start = time.monotonic()
    with pytest.raises(WorkerDiedError, match="generation worker 0 .* died during generate"):
        trainer.fit()
    assert time.monotonic() - start < 120
    assert not trainer.run.rollouts._thread.is_alive()  # the producer stopped; nothing left running
    assert generation.calls == 2 and set(generation.threads) == {"reinforge-rollout-producer"}
    assert [r["step"] for r in read_metrics(tmp_path / "killed" / "logs")] in ([], [1])  # step 2 never trained
