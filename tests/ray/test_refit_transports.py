"""Refit over a gloo broadcast group (`cluster.refit_transport: collective`) on a local Ray, for real.

After a train step, a collective refit leaves every replica with exactly the weights an
object-store refit gives, the generator's logprobs equal the trainer's (1e-4), and the refit
reports its bytes and seconds. (The NCCL and CUDA IPC flavours are in tests/gpu/test_refit_gpu.py.)
"""

from __future__ import annotations

import time

import pytest
import torch

from reinforge.core.batch import Batch
from reinforge.core.errors import ReinforgeError
from reinforge.executors.ray.refit_collective import PeerBucket
from reinforge.core.sampling import SamplingParams
from reinforge.testing.conformance_training import ConformanceNLLLoss, conformance_batch
from tests.ray.test_ray_executor import (  # noqa: F401 - fixtures
    VOCAB,
    as_training_rows,
    cluster,
    generated_mask,
    sgd_policy,
)

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("one_torch_thread")]


def engine_weights(generation) -> list[dict[str, torch.Tensor]]:
    """Every replica's parameters (each replica's live model, copied to the driver)."""
    import ray

    models = ray.get([actor.attribute.remote("model") for actor in generation.group.actors])
    return [{name: t.detach().clone() for name, t in model.state_dict().items()} for model in models]


def test_collective_refit_gives_the_object_store_weights_and_the_trainers_logprobs(ray_session, model_dir, registry):
    from reinforge.executors.ray.executor import RayExecutor

    policy = sgd_policy(model_dir)
    executor = RayExecutor(
        cluster(training_workers=2, generation_workers=2, colocated=False, refit_transport="collective"), registry
    )
    try:
        training = executor.training(policy, need_reference=False, seed=0)
        with pytest.raises(ReinforgeError, match="both groups must be started"):
            next(iter(training.named_weights(2**20)))  # no generation group yet: nowhere to send to
        generation = executor.generation(policy.model, policy.generation, seed=0)
        training.train(conformance_batch(VOCAB, rows=8, width=24, seed=1), ConformanceNLLLoss())
        before = engine_weights(generation)[0]

        executor.refit_stats.pop()
        start = time.perf_counter()
        buckets = list(training.named_weights(64 * 2**10))  # several buckets; all staged before any is delivered
        staged = time.perf_counter()
        assert len(buckets) > 1 and all(isinstance(b, PeerBucket) for b in buckets)
        assert all(t.device.type == "meta" for b in buckets for _, t in b)  # the driver never holds the bytes
        for bucket in buckets:
            generation.update_weights(bucket)
        delivered = time.perf_counter()
        stats = executor.refit_stats.pop()
        assert stats["refit/buckets"] == len(buckets)
        assert stats["refit/broadcast_bytes"] == sum(b.nbytes for b in buckets) == sum(
            t.numel() * t.element_size() for b in buckets for _, t in b
        )
        # Gathering is timed while the buckets are staged, loading while they are delivered: each within its own span.
        gather, load = stats["refit/gather_seconds"], stats["refit/load_seconds"]
        assert 0 < gather <= staged - start and 0 < load <= delivered - staged
        assert stats["refit/broadcast_gb_per_s"] == pytest.approx(stats["refit/broadcast_bytes"] / 1e9 / (gather + load))
        collective = engine_weights(generation)
        assert any(not torch.equal(collective[0][n], before[n]) for n in before)  # the step's weights arrived
        for name in before:
            assert torch.equal(collective[1][name], collective[0][name]), name  # both replicas got the broadcast

        # (a) the generator's logprobs equal the trainer's
        prompts = Batch.from_sequences([[5, 17, 33, 8], [9, 44, 2]], pad_id=0)
        fresh = generation.generate(prompts, SamplingParams(temperature=1.0, max_new_tokens=8, seed=3))
        mask = generated_mask(fresh)
        trainer_logprobs = training.logprobs(as_training_rows(fresh))  # [R, T]
        torch.testing.assert_close(fresh["generation_logprobs"][mask], trainer_logprobs[mask], atol=1e-4, rtol=0)

        # (b) an object-store refit of the same policy leaves the engines bit-for-bit as they are
        peer_refit, training.peer_refit = training.peer_refit, None
        try:
            for bucket in training.named_weights(64 * 2**10):
                assert not isinstance(bucket, PeerBucket)
                generation.update_weights(bucket)
        finally:
            training.peer_refit = peer_refit
        for replica, weights in enumerate(engine_weights(generation)):
            for name, tensor in weights.items():
                assert torch.equal(tensor, collective[replica][name]), (replica, name)

        # A second refit reuses the group; a bucket of a finished stream is refused with a clear message.
        stale = buckets[0]
        for bucket in training.named_weights(2**20):
            generation.update_weights(bucket)
        with pytest.raises(ReinforgeError, match="no longer staged"):
            generation.update_weights(stale)
    finally:
        executor.shutdown()
