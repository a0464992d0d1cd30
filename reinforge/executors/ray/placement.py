"""Where each Ray worker goes: placement-group bundles planned from `ClusterConfig`, then reserved.

Why plan before asking Ray: a placement group that cannot be satisfied waits forever, so the
plan is checked against the declared cluster first (and the wait is bounded), and the error
says what was asked for and what the cluster has.

Colocated mode: one placement group with one bundle per training worker; generation replica
`r` shares bundle `r * (training_workers // generation_workers)` with that training worker,
each taking half of the bundle's GPUs (Ray fractional GPUs put both on the same device), so
they must take turns (the trainer offloads while the engine generates, the engine sleeps while
the trainer trains). Disaggregated mode: two placement groups, one per worker group, so
neither ever waits for the other's memory.
Environment actors need no devices and are scheduled outside the placement groups.
"""

from __future__ import annotations

from typing import Any

import attrs

from reinforge.core.errors import ReinforgeError
from reinforge.core.run_config import ClusterConfig

Bundle = dict[str, float]


@attrs.frozen
class Slot:
    """One worker's place: which placement group and bundle, and what the actor itself reserves in it."""

    group: int  # index into PlacementPlan.groups
    bundle: int
    num_cpus: float
    num_gpus: float


@attrs.frozen
class PlacementPlan:
    """Bundles per placement group, and a slot per training worker and per generation replica."""

    groups: list[list[Bundle]]
    training: list[Slot]
    generation: list[Slot]
    strategy: str

    def total(self, resource: str) -> float:
        return sum(bundle.get(resource, 0.0) for group in self.groups for bundle in group)


def plan_placement(cluster: ClusterConfig) -> PlacementPlan:
    """Bundles and slots for `cluster`; a ReinforgeError when the config cannot fit the cluster it declares."""
    cpus, gen_cpus = cluster.cpus_per_worker, cluster.generation_cpus
    train_gpus, gen_gpus = cluster.training_gpus, cluster.generation_gpus
    n_train, n_gen = cluster.training_workers, cluster.generation_workers
    if cluster.gpus_per_node == 0 and (train_gpus or gen_gpus):
        raise ReinforgeError(
            "cluster.gpus_per_worker / generation_gpus_per_worker ask for GPUs but cluster.gpus_per_node is 0; "
            "set gpus_per_node to the GPUs each node has"
        )
    if cluster.colocated:
        if n_gen > n_train:
            raise ReinforgeError(
                f"colocated mode puts each generation replica beside a training worker, so cluster.generation_workers "
                f"({n_gen}) must be <= cluster.training_workers ({n_train}); lower it, or set cluster.colocated: false"
            )
        if gen_gpus != train_gpus:
            raise ReinforgeError(
                f"colocated mode shares each training worker's GPUs with a generation replica, so "
                f"cluster.generation_gpus_per_worker ({gen_gpus:g}) must equal gpus_per_worker ({train_gpus:g}); "
                "set cluster.colocated: false to give the engines devices of their own"
            )
        stride = n_train // n_gen
        hosts = {r * stride: r for r in range(n_gen)}
        bundles = [{"CPU": cpus + (gen_cpus if i in hosts else 0), "GPU": train_gpus} for i in range(n_train)]
        share = train_gpus / 2
        training = [Slot(0, i, cpus, share if i in hosts else train_gpus) for i in range(n_train)]
        generation = [Slot(0, b, gen_cpus, share) for b in sorted(hosts)]
        groups = [bundles]
    else:
        groups = [
            [{"CPU": cpus, "GPU": train_gpus} for _ in range(n_train)],
            [{"CPU": gen_cpus, "GPU": gen_gpus} for _ in range(n_gen)],
        ]
        training = [Slot(0, i, cpus, train_gpus) for i in range(n_train)]
        generation = [Slot(1, i, gen_cpus, gen_gpus) for i in range(n_gen)]
    groups = [[{k: v for k, v in b.items() if v > 0} for b in group] for group in groups]
    plan = PlacementPlan(groups=groups, training=training, generation=generation, strategy=cluster.placement_strategy)
    _check_gpus(plan, cluster)
    return plan


def _check_gpus(plan: PlacementPlan, cluster: ClusterConfig) -> None:
    if cluster.gpus_per_node == 0:
        return
    biggest = max((b.get("GPU", 0.0) for g in plan.groups for b in g), default=0.0)
    if biggest > cluster.gpus_per_node:
        raise ReinforgeError(
            f"one worker asks for {biggest:g} GPUs but a node has {cluster.gpus_per_node} (cluster.gpus_per_node); "
            "a worker cannot span nodes"
        )
    available = cluster.num_nodes * cluster.gpus_per_node
    needed = plan.total("GPU")
    nodes = 1 if cluster.placement_strategy == "STRICT_PACK" else cluster.num_nodes
    if needed > nodes * cluster.gpus_per_node:
        where = "one node (STRICT_PACK)" if nodes == 1 and cluster.num_nodes > 1 else f"{available} GPUs in the cluster"
        raise ReinforgeError(
            f"the workers need {needed:g} GPUs ({cluster.training_workers} training x {cluster.training_gpus:g}"
            + ("" if cluster.colocated else f" + {cluster.generation_workers} generation x {cluster.generation_gpus:g}")
            + f") but there are {where}; use fewer workers, colocated mode, or more nodes"
        )


class Placement:
    """The reserved placement groups of a plan; `strategy_for(slot)` schedules an actor into its bundle."""

    def __init__(self, plan: PlacementPlan, timeout_s: float) -> None:
        import ray
        from ray.util.placement_group import placement_group

        self.plan = plan
        self.groups = [placement_group(bundles, strategy=plan.strategy) for bundles in plan.groups]
        try:
            ray.get([group.ready() for group in self.groups], timeout=timeout_s)
        except ray.exceptions.GetTimeoutError:
            self.remove()
            raise ReinforgeError(
                f"Ray could not reserve the workers' resources within {timeout_s:g} s: the placement groups need "
                f"{_describe(plan)} ({plan.strategy}) but the cluster has {_resources(ray.available_resources())} free; "
                "lower cluster.cpus_per_worker or the worker counts, raise cluster.local_num_cpus for a local Ray, "
                "or add nodes"
            ) from None

    def strategy_for(self, slot: Slot) -> Any:
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        return PlacementGroupSchedulingStrategy(
            placement_group=self.groups[slot.group],
            placement_group_bundle_index=slot.bundle,
            placement_group_capture_child_tasks=True,
        )

    def remove(self) -> None:
        from ray.util.placement_group import remove_placement_group

        for group in self.groups:
            try:
                remove_placement_group(group)
            except Exception:  # noqa: BLE001 - already gone (Ray shut down, or removed twice)
                pass
        self.groups = []


def _describe(plan: PlacementPlan) -> str:
    parts = []
    for bundles in plan.groups:
        totals = {key: sum(b.get(key, 0.0) for b in bundles) for key in ("CPU", "GPU")}
        parts.append(f"{len(bundles)} bundles totalling {_resources(totals)}")
    return " + ".join(parts)


def _resources(resources: dict[str, float]) -> str:
    shown = {k: v for k, v in resources.items() if k in ("CPU", "GPU") and v}
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in sorted(shown.items())) + "}" if shown else "{}"


def check_free_cpus(cluster: ClusterConfig, cpus: tuple[float, float], *, what: str) -> None:
    """Fail at once when the actors outside the placement groups (environments) cannot get their CPUs.

    Why: Ray would queue such an actor until `worker_start_timeout_s` runs out, and the timeout
    cannot tell a full cluster from a slow runtime environment. `cpus` is (free now, the cluster's total).
    """
    free, total = cpus
    need = cluster.environment_workers * cluster.cpus_per_worker
    if need > free + 1e-9:
        raise ReinforgeError(
            f"not enough CPUs for {what}: they need {need:g} CPU ({cluster.environment_workers} x "
            f"cluster.cpus_per_worker {cluster.cpus_per_worker:g}) outside the placement groups, but the Ray cluster has "
            f"{free:g} of its {total:g} CPU free (the training and generation placement groups hold the rest). Lower "
            "cluster.cpus_per_worker or cluster.environment_workers, or give Ray more CPUs (cluster.local_num_cpus "
            "for a local Ray; it may exceed the cores)"
        )
