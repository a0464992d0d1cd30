"""GPU refit transports on a local Ray: CUDA IPC (colocated) and the NCCL broadcast group (disaggregated).

Written but never run in this project so far: its machines have no GPU. Each test skips, with
the reason, when CUDA (or a second GPU, for NCCL) is missing. On a GPU machine:
`RAY_AUTH_MODE=disabled pytest -m gpu tests/gpu/test_refit_gpu.py`.

Both check what the CPU test of the gloo group checks (tests/ray/test_refit_transports.py):
after a train step and a refit, the generator's logprobs equal the trainer's (1e-4, float32),
the engines hold exactly the weights an object-store refit gives, and the metrics count the bytes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from reinforge.core.batch import Batch
from reinforge.executors.ray.refit_collective import PeerBucket
from reinforge.core.registry import Registry, RegistrySettings
from reinforge.core.run_config import ClusterConfig, OptimizerConfig, PolicyConfig
from reinforge.core.sampling import SamplingParams
from reinforge.testing.conformance_training import ConformanceNLLLoss, conformance_batch
from reinforge.models.tiny_model import build_model

pytestmark = [pytest.mark.gpu, pytest.mark.ray]

GPUS = torch.cuda.device_count() if torch.cuda.is_available() else 0
needs_one_gpu = pytest.mark.skipif(GPUS < 1, reason="needs an NVIDIA GPU (torch.cuda.is_available() is False)")
needs_two_gpus = pytest.mark.skipif(
    GPUS < 2, reason=f"the NCCL refit group needs two GPUs (NCCL cannot put two ranks on one GPU); this machine has {GPUS}"
)
VOCAB = 704


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model(tmp_path_factory.mktemp("gpu-refit") / "model", size="tiny", seed=0)


def policy(model_dir: Path) -> PolicyConfig:
    return PolicyConfig(
        model_name=str(model_dir),
        train_global_batch_size=8,
        train_micro_batch_size=2,
        logprob_batch_size=4,
        max_total_sequence_length=64,
        optimizer=OptimizerConfig(name="sgd", lr=0.5, weight_decay=0.0),
    )


def engine_weights(generation) -> list[dict[str, torch.Tensor]]:
    import ray

    models = ray.get([actor.attribute.remote("model") for actor in generation.group.actors])
    return [{n: t.detach().cpu().clone() for n, t in m.state_dict().items()} for m in models]


def refit_and_check(cluster: ClusterConfig, model_dir: Path, label: str) -> None:
    from reinforge.executors.ray.executor import RayExecutor

    executor = RayExecutor(cluster, Registry.create(RegistrySettings(load_entry_points=False)))
    try:
        training = executor.training(policy(model_dir), need_reference=False, seed=0)
        generation = executor.generation(policy(model_dir).model, policy(model_dir).generation, seed=0)
        training.train(conformance_batch(VOCAB, rows=8, width=24, seed=1), ConformanceNLLLoss())
        executor.refit_stats.pop()
        buckets = 0
        for bucket in training.named_weights(64 * 2**10):
            assert isinstance(bucket, PeerBucket)
            generation.update_weights(bucket)
            buckets += 1
        stats = executor.refit_stats.pop()
        assert stats["refit/buckets"] == buckets > 1 and stats[f"refit/{label}_bytes"] > 0

        prompts = Batch.from_sequences([[5, 17, 33, 8], [9, 44, 2]], pad_id=0)
        fresh = generation.generate(prompts, SamplingParams(temperature=1.0, max_new_tokens=8, seed=3))
        columns = torch.arange(fresh["output_ids"].shape[1])
        mask = (columns >= fresh["prompt_lengths"][:, None]) & (columns < fresh["sequence_lengths"][:, None])
        trainer = training.logprobs(Batch(input_ids=fresh["output_ids"], input_lengths=fresh["sequence_lengths"]))
        torch.testing.assert_close(fresh["generation_logprobs"][mask].cpu(), trainer[mask].cpu(), atol=1e-4, rtol=0)

        peer = engine_weights(generation)
        peer_refit, training.peer_refit = training.peer_refit, None  # the same policy through the object store
        try:
            for bucket in training.named_weights(64 * 2**10):
                generation.update_weights(bucket)
        finally:
            training.peer_refit = peer_refit
        for replica, weights in enumerate(engine_weights(generation)):
            for name, tensor in weights.items():
                assert torch.equal(tensor, peer[replica][name]), (replica, name)
    finally:
        executor.shutdown()


@needs_one_gpu
def test_cuda_ipc_refit_on_a_shared_gpu(ray_session, model_dir):
    cluster = ClusterConfig(
        executor="ray", gpus_per_node=1, training_workers=1, generation_workers=1, colocated=True, refit_transport="cuda_ipc"
    )
    refit_and_check(cluster, model_dir, "ipc")


@needs_two_gpus
def test_nccl_broadcast_refit_to_an_engine_on_its_own_gpu(ray_session, model_dir):
    cluster = ClusterConfig(
        executor="ray", gpus_per_node=2, training_workers=1, generation_workers=1, colocated=False, refit_transport="collective"
    )
    refit_and_check(cluster, model_dir, "broadcast")
