"""The Ray executor end to end on a local Ray (2 CPU cores, one Ray session for the module).

(1) FSDP2 over 2 data-parallel ranks, and tensor parallel 2, match the single-process backend;
(2) a GRPO run on Ray reproduces the same seeded run on the local executor;
(3) after a refit the generator's logprobs equal the trainer's;
(4) a crashed environment actor is restarted and its chunk retried; a dead training rank fails
    the run with an error naming it, and a new Trainer resumes from the last checkpoint;
(5) workers rebuild the driver's plugin set (a local plugins.toml module included), in the
    interpreter the group's runtime names.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from reinforge.backends.generation.hf.backend import HFGenerationBackend
from reinforge.backends.generation.hf.config import HFGenerationConfig
from reinforge.backends.training.dtensor.backend import DTensorBackend
from reinforge.backends.training.dtensor.config import DTensorConfig
from reinforge.core.batch import Batch
from reinforge.core.errors import ReinforgeError
from reinforge.core.load import load_config
from reinforge.core.registry import Registry
from reinforge.core.run_config import ClusterConfig, EnvConfig, OptimizerConfig, PolicyConfig, WorkerRuntimeConfig
from reinforge.core.sampling import SamplingParams
from reinforge.trainer import Trainer
from reinforge.testing.conformance_training import ConformanceNLLLoss, conformance_batch, weights
from tests.integration.grpo_helpers import CPU_RECIPE, read_metrics, tiny_overrides

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("one_torch_thread")]

HERE = Path(__file__).resolve().parent
VOCAB = 704  # <= the tiny model's vocabulary
RAY_OVERRIDES = ("cluster.executor=ray", "cluster.cpus_per_worker=0.5")


def cluster(**fields) -> ClusterConfig:
    return ClusterConfig(executor="ray", cpus_per_worker=0.5, **fields)


def sgd_policy(model_dir: Path, **fields) -> PolicyConfig:
    settings = {
        "model_name": str(model_dir),
        "train_global_batch_size": 8,
        "train_micro_batch_size": 2,
        "logprob_batch_size": 4,
        "max_total_sequence_length": 64,
        "max_grad_norm": 1.0,
        "optimizer": OptimizerConfig(name="sgd", lr=0.5, weight_decay=0.0),
    }
    return PolicyConfig(**{**settings, **fields})


def assert_same_step(ray_backend, single: DTensorBackend) -> None:
    """Same logprobs, loss, grad norm, and weights after one optimizer step (1e-5)."""
    batch = conformance_batch(VOCAB, rows=8, width=24, seed=1)
    before = weights(single)
    torch.testing.assert_close(ray_backend.logprobs(batch), single.logprobs(batch), atol=1e-5, rtol=0)
    got, want = ray_backend.train(batch, ConformanceNLLLoss()), single.train(batch, ConformanceNLLLoss())
    assert got["loss"] == pytest.approx(want["loss"], abs=1e-5)
    assert got["grad_norm"] == pytest.approx(want["grad_norm"], abs=1e-5)
    assert got["rows"] == 8  # summed over both ranks' shards
    after, expected = weights(ray_backend), weights(single)
    assert after.keys() == expected.keys()
    for name, tensor in after.items():
        torch.testing.assert_close(tensor, expected[name], atol=1e-5, rtol=0, msg=name)
    assert max((after[n] - before[n]).abs().max().item() for n in after) > 1e-3  # the step moved the weights


def generated_mask(out: Batch) -> torch.Tensor:
    columns = torch.arange(out["output_ids"].shape[1])
    return (columns >= out["prompt_lengths"][:, None]) & (columns < out["sequence_lengths"][:, None])  # [R, T]


def as_training_rows(out: Batch) -> Batch:
    return Batch(input_ids=out["output_ids"], input_lengths=out["sequence_lengths"])




# --------------------------------------------------------------------------- (1) and (3)
def test_two_workers_for_a_backend_without_data_parallelism_are_refused_before_any_worker_starts(ray_session, model_dir, registry):
    from reinforge.executors.ray.executor import RayExecutor

    executor = RayExecutor(cluster(training_workers=2, generation_workers=1), registry)
    try:
        with pytest.raises(ReinforgeError) as caught:
            executor.training(sgd_policy(model_dir, backend="raytest_one_rank"), need_reference=False, seed=0)
        assert str(caught.value) == (
            "the training backend 'raytest_one_rank' has no data parallelism, but cluster.training_workers=2 would "
            "make 2 replicas, each training its own drifting copy; set cluster.training_workers=1, or use a backend "
            "that shards the batch (e.g. dtensor)"
        )
        assert executor.groups == []  # no actor was started
    finally:
        executor.shutdown()


def test_fsdp_over_two_ranks_matches_one_process_and_refit_syncs_the_generator(ray_session, model_dir, registry):
    from reinforge.executors.ray.executor import RayExecutor

    policy = sgd_policy(model_dir)
    executor = RayExecutor(cluster(training_workers=2, generation_workers=1, colocated=True), registry)
    try:
        training = executor.training(policy, need_reference=False, seed=0)
        generation = executor.generation(policy.model, policy.generation, seed=0)
        assert training.dp_size == 2 and training.tp_size == 1
        assert_same_step(training, DTensorBackend(policy))

        # Colocated turn-taking went through the seams: training put the engine to sleep.
        engine = generation.group.actors[0]
        import ray

        assert ray.get(engine.attribute.remote("asleep")) is True
        prompts = Batch.from_sequences([[5, 17, 33, 8], [9, 44, 2]], pad_id=0)
        sampling = SamplingParams(temperature=1.0, max_new_tokens=8, seed=3)
        stale = generation.generate(prompts, sampling)
        assert ray.get(engine.attribute.remote("asleep")) is False
        assert all(ray.get([a.attribute.remote("offloaded") for a in training.group.actors]))
        mask = generated_mask(stale)
        stale_gap = (training.logprobs(as_training_rows(stale)) - stale["generation_logprobs"])[mask].abs().max()
        assert stale_gap > 1e-3  # the engine still holds the weights from before the step

        executor.refit_stats.pop()  # forget the transfers `weights()` made above
        buckets = list(training.named_weights(64 * 2**10))  # several buckets for a 1.5 MB model
        assert len(buckets) > 1 and all(b.object_ref is not None for b in buckets)
        for bucket in buckets:
            generation.update_weights(bucket)
        stats = executor.refit_stats.pop()
        assert stats["refit/buckets"] == len(buckets) and stats["refit/store_bytes"] == sum(b.nbytes for b in buckets)

        fresh = generation.generate(prompts, sampling)
        trainer_logprobs = training.logprobs(as_training_rows(fresh))  # [R, T]
        mask = generated_mask(fresh)
        torch.testing.assert_close(fresh["generation_logprobs"][mask], trainer_logprobs[mask], atol=1e-4, rtol=0)
    finally:
        executor.shutdown()


# --------------------------------------------------------------------------- (1) TP, and generation replicas
def test_tensor_parallel_over_two_ranks_matches_one_process_and_replicas_keep_order(ray_session, model_dir, registry):
    from reinforge.executors.ray.executor import RayExecutor

    tp_policy = sgd_policy(model_dir, backend_cfg=DTensorConfig(tensor_parallel_size=2))
    executor = RayExecutor(cluster(training_workers=2, generation_workers=2, colocated=False), registry)
    try:
        training = executor.training(tp_policy, need_reference=False, seed=0)
        assert training.dp_size == 1 and training.tp_size == 2
        assert_same_step(training, DTensorBackend(sgd_policy(model_dir)))

        gen_policy = sgd_policy(model_dir, generation=tp_policy.generation)
        generation = executor.generation(gen_policy.model, gen_policy.generation, seed=0)
        prompts = Batch.from_sequences([[5, 17, 33, 8], [9, 44], [7, 7, 7, 12, 90], [3]], pad_id=0)
        greedy = SamplingParams(temperature=0.0, max_new_tokens=6, n=2)
        local = HFGenerationBackend(gen_policy, HFGenerationConfig(device="cpu")).generate(prompts, greedy)
        remote = generation.generate(prompts, greedy)  # rows 0-1 on replica 0, rows 2-3 on replica 1
        mask = generated_mask(local)
        assert torch.equal(remote["sequence_lengths"], local["sequence_lengths"])
        assert torch.equal(remote["output_ids"][mask], local["output_ids"][mask])
        torch.testing.assert_close(remote["generation_logprobs"], local["generation_logprobs"], atol=1e-5, rtol=0)
        # Sampling: replicas draw different numbers, so identical prompts on two replicas differ.
        same = Batch.from_sequences([[5, 17, 33, 8]] * 2, pad_id=0)
        sampled = generation.generate(same, SamplingParams(temperature=1.0, max_new_tokens=8, seed=0))
        assert not torch.equal(sampled["output_ids"][0], sampled["output_ids"][1])
    finally:
        executor.shutdown()


# --------------------------------------------------------------------------- (2)
def test_grpo_on_ray_reproduces_the_local_run(ray_session, model_dir, registry, tmp_path):
    common = ("env.name=raytest_checksum", "env.env_cfg=null", "grpo.val_at_end=false", "checkpointing.enabled=false")
    runs = {
        "local": common,
        "ray": (*common, *RAY_OVERRIDES, "cluster.training_workers=2", "cluster.generation_workers=1", "cluster.environment_workers=2"),
    }
    logs = {}
    for name, extra in runs.items():
        config = load_config(CPU_RECIPE, tiny_overrides(model_dir, tmp_path / name, steps=3, extra=extra), registry)
        Trainer.from_config(config, registry).fit()
        logs[name] = read_metrics(tmp_path / name / "logs")
    assert [r["step"] for r in logs["ray"]] == [1, 2, 3]
    for local, remote in zip(logs["local"], logs["ray"]):
        assert local["train/reward_std"] > 0  # rewards vary, so the steps really train
        for key in ("train/loss", "train/grad_norm", "train/reward_mean", "train/response_length_mean",
                    "train/token_mult_prob_error", "env/reward_mean", "env/num_scored"):
            assert remote[key] == pytest.approx(local[key], rel=1e-4, abs=1e-5), (local["step"], key)
    assert logs["ray"][-1]["refit/bytes"] == logs["local"][-1]["refit/bytes"]


# --------------------------------------------------------------------------- (4)
def test_crashed_environment_actor_is_restarted_and_its_chunk_retried(ray_session, registry, tmp_path):
    from reinforge.executors.ray.executor import RayExecutor
    from tests.ray.raytest_impl import checksum_reward

    conversations = [[{"role": "user", "content": "q"}, {"role": "assistant", "content": f"answer {i}"}] for i in range(6)]
    metadata = [{} for _ in conversations]
    config_cls = registry.config_class("environment", "raytest_crash_once")

    executor = RayExecutor(cluster(environment_workers=2, environment_max_restarts=1), registry)
    try:
        env = executor.environment(EnvConfig(name="raytest_crash_once", env_cfg=config_cls(marker=str(tmp_path / "crashed"))))
        result = env.step(conversations, metadata)
        assert (tmp_path / "crashed").exists()  # a worker really died mid-step
        assert result.rewards == [checksum_reward(c) for c in conversations]
        assert result.metrics["num_scored"] == 6  # counts are summed over the chunks
        assert len({info["pid"] for info in result.info}) == 2  # both actors worked
    finally:
        executor.shutdown()

    # No restarts left: the retry fails too, and the error names the environment and the worker.
    executor = RayExecutor(cluster(environment_workers=1, environment_max_restarts=0), registry)
    try:
        env = executor.environment(EnvConfig(name="raytest_crash_once", env_cfg=config_cls(marker=str(tmp_path / "again"))))
        with pytest.raises(ReinforgeError, match=r"environment 'raytest_crash_once' worker 0 \(node .*\) died during step"):
            env.step(conversations, metadata)
    finally:
        executor.shutdown()


def test_dead_training_rank_fails_clearly_and_the_run_resumes_from_its_checkpoint(ray_session, model_dir, registry, tmp_path):
    marker = tmp_path / "rank-1-died"
    extra = (
        *RAY_OVERRIDES,
        "cluster.training_workers=2",
        "policy.backend=raytest_crashing_dtensor",
        f"policy.backend_cfg={{crash_marker: {marker}}}",
        "checkpointing.save_period=1",
        "grpo.val_at_end=false",
    )
    config = load_config(CPU_RECIPE, tiny_overrides(model_dir, tmp_path / "run", steps=3, extra=extra), registry)
    with pytest.raises(ReinforgeError, match=r"training rank 1 \(node [\d.]+, node id \w+, pid \d+\) died during train") as failure:
        Trainer.from_config(config, registry).fit()
    assert "resumes from its last checkpoint" in str(failure.value)
    assert marker.exists()
    assert sorted(p.name for p in (tmp_path / "run" / "ckpt").iterdir()) == ["step_1"]

    resumed = Trainer.from_config(config, registry)  # the marker exists now: rank 1 survives
    resumed.fit()
    assert resumed.step == 3
    assert [r["step"] for r in read_metrics(tmp_path / "run" / "logs")] == [1, 2, 3]


# --------------------------------------------------------------------------- (5)
def test_workers_rebuild_the_plugin_set_in_the_interpreter_their_group_names(ray_session, registry, tmp_path):
    import ray

    from reinforge.executors.ray.executor import RayExecutor

    wrapper = tmp_path / "python"
    wrapper.write_text(f'#!/bin/sh\nREINFORGE_WRAPPED=yes exec "{sys.executable}" "$@"\n')
    wrapper.chmod(0o755)
    runtime = WorkerRuntimeConfig(py_executable=str(wrapper), env_vars={"REINFORGE_GROUP_VAR": "env-group"})
    executor = RayExecutor(cluster(environment_runtime=runtime), registry)
    try:
        env = executor.environment(EnvConfig(name="raytest_checksum"))
        worker = env.group.actors[0]
        python = ray.get(worker.python.remote(("REINFORGE_WRAPPED", "REINFORGE_GROUP_VAR")))
        assert python["env"] == {"REINFORGE_WRAPPED": "yes", "REINFORGE_GROUP_VAR": "env-group"}
        assert python["prefix"] == sys.prefix
        listing = ray.get(worker.plugin_listing.remote())
        assert listing == [(s.kind, s.name, str(s.source)) for s in registry.specs()]
        assert ("environment", "raytest_checksum", f"local {HERE / 'raytest_plugins.py'}") in listing
        assert env.step([[{"role": "assistant", "content": "x"}]], [{}]).metrics["num_scored"] == 1
    finally:
        executor.shutdown()

    class InProcessPlugin:
        from reinforge.core.hookspecs import hookimpl

        @hookimpl
        def reinforge_register_environments(self, register):
            register("notebook_env", "collections:OrderedDict")

    local_only = Registry.create(registry.settings, plugins=[("notebook", InProcessPlugin())])
    executor = RayExecutor(cluster(), local_only)
    try:
        with pytest.raises(ReinforgeError, match="registered in this process only"):
            executor.environment(EnvConfig(name="notebook_env"))
    finally:
        executor.shutdown()
