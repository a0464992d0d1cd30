"""The `megatron` backend under the Ray executor: 2 training workers (tensor parallel 2, data parallel 2, pipeline parallel 2).

Each worker joins the group's torch.distributed (gloo) group and builds `megatron` by name, as
in production; the project's plugins.toml lists `shim_plugin.py`, which installs the test-only
CPU shim in every worker. One step through the worker group must equal one step of a
single-process backend (logprobs, loss, grad norm, and the weights refit would send).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from megatron_cpu.helpers import policy as make_policy
from reinforge.backends.training.megatron.backend import MegatronBackend
from reinforge.backends.training.megatron.config import MegatronConfig
from reinforge.core.registry import Registry, RegistrySettings
from reinforge.core.run_config import ClusterConfig, OptimizerConfig
from reinforge.testing.conformance_training import ConformanceNLLLoss, conformance_batch, weights
from reinforge.models.tiny_model import build_model

pytestmark = [pytest.mark.ray, pytest.mark.distributed]

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Registry:
    folder = tmp_path_factory.mktemp("project")
    (folder / "plugins.toml").write_text(f'[plugins]\nlocal = ["{HERE / "shim_plugin.py"}"]\n')
    return Registry.create(RegistrySettings(project_file=str(folder / "plugins.toml"), load_entry_points=False))


@pytest.mark.parametrize(
    ("parallel", "replica_ranks"),
    [({"tensor_parallel_size": 2}, 2), ({}, 1), ({"pipeline_parallel_size": 2}, 2)],
    ids=["tp2", "dp2", "pp2"],
)
def test_two_ray_workers_match_one_process(ray_session, registry, tmp_path, parallel, replica_ranks):
    from reinforge.executors.ray.executor import RayExecutor

    model_dir = build_model(tmp_path / "model", size="tiny", seed=0)
    settings = {"max_grad_norm": 1.0, "optimizer": OptimizerConfig(name="sgd", lr=0.5, weight_decay=0.0)}
    options = MegatronConfig(device="cpu", **parallel)
    ray_policy = make_policy(model_dir, backend="megatron", backend_cfg=options, **settings)
    batch = conformance_batch(704, rows=8, width=24, seed=1)
    single = MegatronBackend(make_policy(model_dir, **settings), MegatronConfig(device="cpu"))
    executor = RayExecutor(ClusterConfig(executor="ray", cpus_per_worker=0.5, training_workers=2), registry)
    try:
        training = executor.training(ray_policy, need_reference=False, seed=0)
        # Both ranks of a tensor- or pipeline-parallel replica receive the same rows.
        assert (training.tp_size, training.dp_size) == (replica_ranks, 2 // replica_ranks)
        torch.testing.assert_close(training.logprobs(batch), single.logprobs(batch), atol=1e-5, rtol=0)
        got, want = training.train(batch, ConformanceNLLLoss()), single.train(batch, ConformanceNLLLoss())
        assert got["loss"] == pytest.approx(want["loss"], abs=1e-6)
        assert got["grad_norm"] == pytest.approx(want["grad_norm"], abs=1e-5)
        assert got["rows"] == 8 and got["microbatches"] == want["microbatches"]
        sent, expected = weights(training), weights(single)  # through the object store, as refit sends them
        assert sent.keys() == expected.keys()
        assert max((sent[k] - expected[k]).abs().max().item() for k in sent) < 1e-5
    finally:
        executor.shutdown()
        single.shutdown()
