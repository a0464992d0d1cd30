"""Asynchronous GRPO end to end on the tiny model (local executor).

- age 0 trains exactly what the synchronous run trains (the very token ids, and every train/ and val/ metric);
- the same holds with a multi-turn environment (the sliding puzzle), whose turns the producer runs;
- at age 1 the trained groups are one step old, their IS weights compare the trainer with the generating weights;
- a stop-and-resume through the trainer's checkpoints trains the same multiset of prompts as an uninterrupted run;
- a generator failure in the producer thread ends `fit()` with the generator's error, quickly.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch

from reinforge.core.interfaces import EnvironmentStep
from reinforge.core.load import load_config
from reinforge.trainer import Trainer
from tests.integration.grpo_helpers import CPU_RECIPE, REPO, read_metrics, tiny_overrides

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("one_torch_thread")]

ASYNC = ("grpo.async_grpo.enabled=true",)
AGE_0 = (*ASYNC, "grpo.async_grpo.max_trajectory_age_steps=0")
AGE_1 = (*ASYNC, "grpo.async_grpo.max_trajectory_age_steps=1", "loss_fn.use_importance_sampling_correction=true")
# Metrics that are not functions of what was trained: wall time, memory, and the async accounting itself.
UNTRAINED = ("timing/", "async/", "refit/", "train/memory_")


class RecordingPolicy:
    """The run's training backend, recording every batch it trains on (a copy of the ids and the prompt lengths);
    `before_train(k)` runs before the k-th optimizer step (1-based)."""

    def __init__(self, backend: Any, before_train: Any = None) -> None:
        self._backend = backend
        self._before_train = before_train
        self.trained: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.batches: list[Any] = []

    def train(self, batch, loss_fn, **kwargs):
        if self._before_train is not None:
            self._before_train(len(self.trained) + 1)
        self.trained.append((batch["input_ids"].clone(), batch["prompt_lengths"].clone(), batch["generation_logprobs"].clone()))
        self.batches.append(batch)
        return self._backend.train(batch, loss_fn, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)

    def prompts(self) -> Counter:
        """The multiset of trained prompts (their token ids)."""
        return Counter(tuple(ids[r, : int(lengths[r])].tolist()) for ids, lengths, _ in self.trained for r in range(len(ids)))


def train(config, registry=None) -> tuple[RecordingPolicy, dict[str, float]]:
    trainer = Trainer.from_config(config, registry)
    recording = RecordingPolicy(trainer.run.policy)
    trainer.run.policy = recording
    metrics = trainer.fit()
    return recording, metrics


def trained_metrics(log_dir: Path) -> list[dict[str, float]]:
    return [{k: v for k, v in row.items() if not k.startswith(UNTRAINED)} for row in read_metrics(log_dir)]


def check_identical(sync: RecordingPolicy, asynchronous: RecordingPolicy, sync_logs: Path, async_logs: Path) -> None:
    assert len(sync.trained) == len(asynchronous.trained) > 0
    for (ids_a, lengths_a, gen_a), (ids_b, lengths_b, gen_b) in zip(sync.trained, asynchronous.trained):
        assert torch.equal(ids_a, ids_b) and torch.equal(lengths_a, lengths_b) and torch.equal(gen_a, gen_b)
    expected, actual = trained_metrics(sync_logs), trained_metrics(async_logs)
    assert [r["step"] for r in actual] == [r["step"] for r in expected]
    for want, got in zip(expected, actual):
        assert got == want  # bit for bit: same keys, same floats


def test_age_0_trains_exactly_what_the_synchronous_run_trains(tiny_model_dir, tmp_path):
    extra = ("checkpointing.save_period=2", "grpo.val_period=2", "grpo.max_val_samples=2")
    sync, _ = train(load_config(CPU_RECIPE, tiny_overrides(tiny_model_dir, tmp_path / "sync", steps=4, extra=extra)))
    config = load_config(CPU_RECIPE, tiny_overrides(tiny_model_dir, tmp_path / "async", steps=4, extra=(*extra, *AGE_0)))
    asynchronous, metrics = train(config)
    check_identical(sync, asynchronous, tmp_path / "sync" / "logs", tmp_path / "async" / "logs")
    rows = read_metrics(tmp_path / "async" / "logs")
    assert all(r["async/age_max"] == 0 and r["async/regenerated_groups"] == 0 for r in rows)
    assert "val/accuracy" in metrics and (tmp_path / "async" / "ckpt" / "step_4").is_dir()


def test_age_0_with_a_multi_turn_environment_trains_the_same_groups(tiny_model_dir, tmp_path):
    def config(out: Path, *extra: str):
        keep = [o for o in tiny_overrides(tiny_model_dir, out, steps=2) if not o.startswith(("data.", "env.", "policy.backend_cfg"))]
        # the recipe forces the on-policy ratio, which asynchronous GRPO refuses: both twins go without it
        overrides = [*keep, "policy.max_total_sequence_length=640", "data.max_input_seq_length=512", "grpo.max_val_samples=2",
                     "loss_fn.force_on_policy_ratio=false", *extra]
        return load_config(REPO / "examples" / "configs" / "grpo-sliding-puzzle-cpu.yaml", overrides)

    sync, _ = train(config(tmp_path / "sync"))
    asynchronous, metrics = train(config(tmp_path / "async", *AGE_0))
    assert metrics["train/turns_max"] >= 2  # the producer ran the turn loop
    check_identical(sync, asynchronous, tmp_path / "sync" / "logs", tmp_path / "async" / "logs")


class CountingGeneration:
    """The hf generator, counting its calls (one per step's batch here: single turn, no validation)."""

    def __init__(self, real: Any) -> None:
        self.real, self.calls = real, 0
        self._changed = threading.Condition()

    def generate(self, batch, sampling):
        with self._changed:
            self.calls += 1
            self._changed.notify_all()
        return self.real.generate(batch, sampling)

    def wait_for_calls(self, count: int) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: self.calls >= count, timeout=60), (self.calls, count)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


class LengthParity:
    """Reward 1 for an odd-length response: rewards differ within groups, so even the untrained model learns something."""

    def step(self, conversations, metadata):
        n = len(conversations)
        rewards = [float(len(c[-1]["content"]) % 2) for c in conversations]
        return EnvironmentStep(rewards=rewards, observations=[None] * n, done=[True] * n)

    def shutdown(self) -> None: ...


def test_age_1_trains_one_step_old_groups_against_their_generating_weights(tiny_model_dir, tmp_path):
    from reinforge.backends.training.dtensor.backend import DTensorBackend
    from reinforge.backends.training.dtensor.config import DTensorConfig

    from reinforge.backends.generation.hf.backend import HFGenerationBackend

    extra = ("policy.optimizer.lr=5.0e-2", "policy.generation.max_new_tokens=8", "grpo.val_at_end=false")
    config = load_config(CPU_RECIPE, tiny_overrides(tiny_model_dir, tmp_path / "age1", steps=3, extra=(*extra, *AGE_1)))
    generation = CountingGeneration(HFGenerationBackend(config.policy.model, generation=config.policy.generation, seed=0))
    trainer = Trainer.from_config(config, environment=LengthParity(), generation=generation)
    # A trainer slower than the generator, whatever the machine's load: step k trains once step k + 1 started generating.
    recording = RecordingPolicy(trainer.run.policy, before_train=lambda k: generation.wait_for_calls(min(k + 1, 3)))
    trainer.run.policy = recording
    trainer.fit()
    assert generation.calls == 3  # nothing generated past the last step
    rows = read_metrics(tmp_path / "age1" / "logs")
    assert [r["async/age_max"] for r in rows] == [0.0, 1.0, 1.0]  # step 1 has nothing older; then one step off
    assert [r["async/age_optimizer_steps_max"] for r in rows] == [0.0, 1.0, 1.0]
    assert all(r["async/regenerated_groups"] == 0 for r in rows)
    assert rows[0]["train/advantages_max_abs"] > 0  # step 1 changed the policy
    for r in rows:  # the producer's generation time counts for the generator, as a synchronous step's does
        assert r["timing/generation"] > 0 and r["timing/reward"] > 0
        busy = r["timing/generation"] + r.get("timing/refit", 0.0)
        assert r["timing/generation_idle"] == pytest.approx(max(r["timing/total"] - busy, 0.0), abs=1e-12)
    # Step 2 trained groups generated by the initial weights: their recorded generation logprobs are the initial
    # policy's (up to the engines' numerics), and the IS weight compares the trained policy with them.
    initial = DTensorBackend(config.policy, DTensorConfig())
    step2 = recording.batches[1]
    mask = step2["token_mask"].bool()
    temperature = config.policy.generation.temperature or 1.0
    initial_logprobs = initial.logprobs(step2, temperature=temperature)
    assert (initial_logprobs - step2["generation_logprobs"])[mask].abs().max() < 1e-3
    assert abs(rows[1]["train/token_mult_prob_error"] - 1.0) > 1e-2  # the trainer is a step ahead of the generator


def test_a_resumed_async_run_trains_the_same_prompts_as_an_uninterrupted_one(tiny_model_dir, tmp_path):
    common = ("checkpointing.save_period=2", *AGE_1)
    full, _ = train(load_config(CPU_RECIPE, tiny_overrides(tiny_model_dir, tmp_path / "full", steps=4, extra=common)))
    first, _ = train(load_config(CPU_RECIPE, tiny_overrides(tiny_model_dir, tmp_path / "split", steps=2, extra=common)))
    second, _ = train(load_config(CPU_RECIPE, tiny_overrides(tiny_model_dir, tmp_path / "split", steps=4, extra=common)))
    assert len(first.trained) == len(second.trained) == 2
    assert first.prompts() + second.prompts() == full.prompts()  # none skipped, none trained twice
    info = (tmp_path / "split" / "ckpt" / "step_2" / "dataloader.json").read_text()
    assert '"batch_in_epoch": 2' in info  # the saved cursor is the trained frontier, not the producer's read-ahead


class FailingGeneration:
    """A generator that fails on its second call (step 2's groups, generated by the producer thread)."""

    def __init__(self, real: Any) -> None:
        self.real, self.calls = real, 0

    def generate(self, batch, sampling):
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("engine died: out of memory while sampling")
        return self.real.generate(batch, sampling)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_a_generator_failure_in_the_producer_ends_fit_with_its_error(tiny_model_dir, tmp_path):
    from reinforge.backends.generation.hf.backend import HFGenerationBackend

    config = load_config(CPU_RECIPE, tiny_overrides(tiny_model_dir, tmp_path, steps=4, extra=AGE_1))
    generation = FailingGeneration(HFGenerationBackend(config.policy.model, generation=config.policy.generation, seed=0))
    trainer = Trainer.from_config(config, generation=generation)
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="engine died: out of memory while sampling"):
        trainer.fit()
    assert time.monotonic() - start < 60
    assert not trainer.run.rollouts._thread.is_alive()  # the producer stopped; nothing left running
    assert generation.calls == 2  # nothing was generated after the failure
    # it surfaced at the trainer's next call into the producer (a take, refit or save of step 1 or 2): step 2 never trained
    assert [r["step"] for r in read_metrics(tmp_path / "logs")] in ([], [1])
