"""The generation group's refit seam is a method: each bucket delivers itself (no transport type checks there)."""

from __future__ import annotations

import torch

from reinforge.executors.ray.colocation import Colocation
from reinforge.executors.ray.generation_group import RayGenerationBackend
from reinforge.executors.ray.refit_collective import PeerBucket, flatten_bucket
from reinforge.executors.ray.weight_sync import DeliverableBucket, RefitStats, WeightBucket


class FakeGroup:
    """The part of a WorkerGroup that update_weights touches."""

    def __init__(self) -> None:
        self.checked = 0
        self.actors: list = []

    def check_usable(self) -> None:
        self.checked += 1


class CountingBucket(list):
    """A transport of a third kind, unknown to the generation group: it only has to deliver itself."""

    def __init__(self, pairs) -> None:
        super().__init__(pairs)
        self.deliveries: list = []

    def deliver_to(self, replicas, stats) -> None:
        self.deliveries.append((replicas, stats))


def test_a_bucket_of_any_transport_is_asked_to_deliver_itself_to_the_group():
    group, stats = FakeGroup(), RefitStats()
    generation = RayGenerationBackend(group, colocation=Colocation(False), refit_stats=stats)
    bucket = CountingBucket([("w", torch.zeros(2))])
    generation.update_weights(bucket)
    assert bucket.deliveries == [(group, stats)] and group.checked == 1


def test_the_built_in_buckets_keep_the_contract_and_plain_lists_do_not():
    _, layout = flatten_bucket([("w", torch.zeros(2))], "cpu")
    peer = PeerBucket(refit=None, number=1, layout=layout, shared={})
    stored = WeightBucket([("w", torch.zeros(2))], object_ref=None, nbytes=8)
    assert isinstance(peer, DeliverableBucket) and isinstance(stored, DeliverableBucket)
    assert not isinstance([("w", torch.zeros(2))], DeliverableBucket)  # stored first, then delivered
