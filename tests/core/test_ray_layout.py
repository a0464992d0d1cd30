"""The Ray executor's pure parts, without Ray: placement plans, data-parallel layout, chunk merging,
weight packing, replica seeds, colocation turn-taking."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reinforge.core.batch import Batch
from reinforge.executors.ray.colocation import Colocation
from reinforge.executors.ray.environment_group import merge_steps
from reinforge.core.errors import ReinforgeError
from reinforge.executors.ray.generation_group import SEED_STRIDE, replica_sampling
from reinforge.core.interfaces import EnvironmentStep
from reinforge.executors.ray.placement import Slot, plan_placement
from reinforge.core.run_config import ClusterConfig, WorkerRuntimeConfig
from reinforge.core.sampling import SamplingParams
from reinforge.executors.ray.weight_sync import pack_bucket, unpack_bucket
from reinforge.executors.ray.worker_group import WorkerInfo, replica_leaders, shard_for_ranks, split_bounds


def ray_cluster(**fields) -> ClusterConfig:
    return ClusterConfig(executor="ray", **fields)


# --------------------------------------------------------------------------- placement
def test_colocated_plan_shares_each_replica_bundle_with_a_training_rank():
    plan = plan_placement(ray_cluster(gpus_per_node=4, training_workers=4, generation_workers=2, cpus_per_worker=2))
    assert plan.groups == [[{"CPU": 4, "GPU": 1}, {"CPU": 2, "GPU": 1}, {"CPU": 4, "GPU": 1}, {"CPU": 2, "GPU": 1}]]
    # Ranks 0 and 2 share their GPU with a replica (half each); ranks 1 and 3 keep theirs.
    assert [s.num_gpus for s in plan.training] == [0.5, 1, 0.5, 1]
    assert plan.generation == [Slot(0, 0, 2, 0.5), Slot(0, 2, 2, 0.5)]
    assert plan.total("GPU") == 4


def test_disaggregated_plan_gives_each_group_its_own_placement_group():
    plan = plan_placement(
        ray_cluster(gpus_per_node=8, training_workers=4, generation_workers=2, generation_gpus_per_worker=2, colocated=False)
    )
    assert plan.groups == [[{"CPU": 1, "GPU": 1}] * 4, [{"CPU": 1, "GPU": 2}] * 2]
    assert [(s.group, s.bundle, s.num_gpus) for s in plan.generation] == [(1, 0, 2), (1, 1, 2)]
    assert plan.total("GPU") == 8


def test_cpu_plan_has_no_gpu_resources():
    plan = plan_placement(ray_cluster(training_workers=2, cpus_per_worker=0.5))
    assert plan.groups == [[{"CPU": 1.0}, {"CPU": 0.5}]]
    assert all(s.num_gpus == 0 for s in plan.training + plan.generation)
    plan = plan_placement(ray_cluster(training_workers=2, cpus_per_worker=1, generation_cpus_per_worker=2))
    assert plan.groups == [[{"CPU": 3}, {"CPU": 1}]] and plan.generation == [Slot(0, 0, 2, 0)]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"training_workers": 1, "generation_workers": 2}, "generation_workers (2) must be <= cluster.training_workers (1)"),
        ({"gpus_per_node": 2, "generation_gpus_per_worker": 2}, "must equal gpus_per_worker (1)"),
        ({"gpus_per_node": 2, "training_workers": 2, "generation_workers": 2, "colocated": False}, "need 4 GPUs"),
        ({"gpus_per_node": 2, "gpus_per_worker": 4}, "a node has 2"),
        ({"gpus_per_worker": 1}, "gpus_per_node is 0"),
        (
            {"gpus_per_node": 2, "num_nodes": 2, "training_workers": 4, "placement_strategy": "STRICT_PACK"},
            "one node (STRICT_PACK)",
        ),
    ],
)
def test_impossible_plans_say_what_does_not_fit(fields, message):
    with pytest.raises(ReinforgeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        plan_placement(ray_cluster(**fields))


def test_worker_runtime_takes_an_interpreter_or_uv_packages_not_both():
    assert WorkerRuntimeConfig(py_executable="/envs/vllm/bin/python").uv == ()
    with pytest.raises(ValueError, match="not both"):
        WorkerRuntimeConfig(py_executable="/x/python", uv=("vllm",))


# --------------------------------------------------------------------------- data-parallel layout
def rows(n: int) -> Batch:
    return Batch(input_ids=torch.arange(n)[:, None].repeat(1, 3), tags=[f"row{i}" for i in range(n)])


def test_data_parallel_shards_are_contiguous_and_cover_the_batch():
    shards = shard_for_ranks(rows(5), world_size=2, tp_size=1)
    assert [s["tags"] for s in shards] == [["row0", "row1", "row2"], ["row3", "row4"]]


def test_tensor_parallel_ranks_of_a_replica_get_the_same_rows():
    shards = shard_for_ranks(rows(4), world_size=4, tp_size=2)  # ranks (dp, tp): 0=(0,0) 1=(0,1) 2=(1,0) 3=(1,1)
    assert [s["tags"] for s in shards] == [["row0", "row1"], ["row0", "row1"], ["row2", "row3"], ["row2", "row3"]]
    assert shards[0] is shards[1]  # one object, stored once for both ranks
    assert replica_leaders(4, 2) == [0, 2]
    assert shard_for_ranks(rows(3), world_size=2, tp_size=2)[1]["tags"] == ["row0", "row1", "row2"]


def test_too_few_rows_for_the_data_parallel_ranks_is_a_user_error():
    with pytest.raises(ReinforgeError, match="3 rows cannot be shared by 4 data-parallel ranks"):
        shard_for_ranks(rows(3), world_size=4, tp_size=1)


def test_split_bounds_never_gives_an_empty_chunk():
    assert split_bounds(7, 3) == [(0, 3), (3, 5), (5, 7)]
    assert split_bounds(2, 4) == [(0, 1), (1, 2)]
    assert split_bounds(0, 3) == [(0, 0)]


def test_worker_description_names_rank_and_node():
    info = WorkerInfo(group="training", index=1, node_ip="10.0.0.7", node_id="abcdef0123456789", pid=42, gpu_ids=("3",))
    assert info.describe() == "training rank 1 (node 10.0.0.7, node id abcdef012345, pid 42, GPUs 3)"
    assert WorkerInfo(group="generation", index=0).describe() == "generation worker 0 (not started)"


# --------------------------------------------------------------------------- merging environment chunks
def env_step(rewards: list[float], metrics: dict[str, float]) -> EnvironmentStep:
    n = len(rewards)
    return EnvironmentStep(rewards=rewards, observations=[None] * n, done=[True] * n, metrics=metrics, info=[{"r": r} for r in rewards])


def test_chunk_metrics_merge_as_weighted_means_sums_mins_and_maxes():
    a = env_step([1.0, 0.0, 1.0], {"accuracy": 2 / 3, "num_answers": 3.0, "len_min": 4.0, "len_max": 9.0})
    b = env_step([0.0], {"accuracy": 0.0, "num_answers": 1.0, "len_min": 2.0, "len_max": 5.0})
    merged = merge_steps([a, b], [3, 1], summed=("num_answers",))
    assert merged.rewards == [1.0, 0.0, 1.0, 0.0]
    assert merged.info == [{"r": 1.0}, {"r": 0.0}, {"r": 1.0}, {"r": 0.0}]
    assert merged.metrics == pytest.approx({"accuracy": 0.5, "num_answers": 4.0, "len_min": 2.0, "len_max": 9.0})


# --------------------------------------------------------------------------- weight buckets
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.int64])
def test_packed_buckets_round_trip_bit_exactly(dtype):
    pairs = [("a.weight", (torch.randn(3, 5) * 100).to(dtype)), ("b.bias", (torch.randn(7) * 100).to(dtype))]
    packed = pack_bucket(pairs)
    assert packed.nbytes == sum(t.numel() * t.element_size() for _, t in pairs)
    assert all(a.dtype == np.uint8 for a in packed.arrays)
    for array in packed.arrays:  # what the object store hands out
        array.setflags(write=False)
    for (name, tensor), (got_name, got) in zip(pairs, unpack_bucket(packed)):
        assert got_name == name and got.dtype == dtype and got.shape == tensor.shape
        assert torch.equal(got, tensor)


def test_packing_a_non_contiguous_tensor_keeps_its_values():
    tensor = torch.arange(12.0).reshape(3, 4).t()  # [4, 3], not contiguous
    [(_, got)] = unpack_bucket(pack_bucket([("w", tensor)]))
    assert torch.equal(got, tensor)


# --------------------------------------------------------------------------- replicas and colocation
def test_replica_seeds_differ_and_replica_zero_samples_like_the_local_executor():
    sampling = SamplingParams(seed=11)
    assert replica_sampling(sampling, 0) is sampling
    assert replica_sampling(sampling, 2).seed == 11 + 2 * SEED_STRIDE
    assert replica_sampling(SamplingParams(seed=None), 1).seed is None


class Recorder:
    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    def offload_workers(self) -> None:
        self.calls.append("trainer.offload")

    def onload_workers(self) -> None:
        self.calls.append("trainer.onload")

    def sleep_workers(self) -> None:
        self.calls.append("engine.sleep")

    def wake_workers(self) -> None:
        self.calls.append("engine.wake")


def test_colocated_phases_switch_once_and_in_the_memory_safe_order():
    calls: list[str] = []
    colocation = Colocation(enabled=True)
    colocation.training = colocation.generation = Recorder(calls)
    colocation.before_generation()
    colocation.before_generation()  # already generating: nothing to do
    colocation.before_training()
    colocation.forget()  # e.g. a refit touched both
    colocation.before_training()
    assert calls == [
        "trainer.offload", "engine.wake",  # free the devices before the engines take them
        "engine.sleep", "trainer.onload",
        "engine.sleep", "trainer.onload",
    ]


def test_disaggregated_groups_never_switch():
    calls: list[str] = []
    colocation = Colocation(enabled=False)
    colocation.training = colocation.generation = Recorder(calls)
    colocation.before_generation()
    colocation.before_training()
    assert calls == []


def test_environment_actors_that_cannot_get_a_cpu_fail_at_once_naming_the_resource():
    from reinforge.executors.ray.placement import check_free_cpus

    cluster = ClusterConfig(executor="ray", environment_workers=2, cpus_per_worker=1.0)
    check_free_cpus(cluster, (2.0, 4.0), what="the environment actors")  # exactly enough: fine
    with pytest.raises(ReinforgeError, match=r"need 2 CPU \(2 x cluster.cpus_per_worker 1\).*has 1 of its 4 CPU free"):
        check_free_cpus(cluster, (1.0, 4.0), what="the environment actors")
