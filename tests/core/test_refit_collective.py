"""Collective / CUDA IPC refit without Ray: the flat-buffer layout, the config checks, a failed group set-up."""

from __future__ import annotations

import pytest
import torch

from reinforge.core.config import structure
from reinforge.core.errors import ConfigError, ReinforgeError
from reinforge.executors.ray.refit_collective import ALIGN, RefitEndpoint, bucket_views, flatten_bucket
from reinforge.core.run_config import ClusterConfig
from reinforge.executors.ray.weight_sync import RefitStats


def test_flat_buffer_round_trips_every_dtype_and_shape_at_aligned_offsets():
    pairs = [
        ("a", torch.arange(6, dtype=torch.float32).reshape(2, 3)),
        ("b", torch.tensor([1, 2, 3], dtype=torch.bfloat16)),  # 6 bytes: the next tensor starts at the next ALIGN
        ("c", torch.tensor(7, dtype=torch.int64)),  # 0-dim
        ("d", torch.arange(10, dtype=torch.float16)[::2]),  # not contiguous
    ]
    flat, layout = flatten_bucket(pairs, "cpu")
    assert layout.offsets == (0, ALIGN, 2 * ALIGN, 3 * ALIGN)
    assert layout.nbytes == 24 + 6 + 8 + 10 and layout.size == 4 * ALIGN == flat.numel()
    assert layout.dtypes == ("float32", "bfloat16", "int64", "float16") and layout.shapes == ((2, 3), (3,), (), (5,))
    views = bucket_views(flat, layout)
    for (name, want), (got_name, got) in zip(pairs, views):
        assert got_name == name and got.dtype == want.dtype and torch.equal(got, want)
    assert views[0][1].data_ptr() == flat.data_ptr()  # views, not copies
    meta = layout.meta_pairs()
    assert [t.device.type for _, t in meta] == ["meta"] * 4
    assert sum(t.numel() * t.element_size() for _, t in meta) == layout.nbytes  # what GRPO counts as refit/bytes


def test_refit_metrics_are_named_after_the_transport():
    assert set(RefitStats().pop()) == {
        "refit/buckets", "refit/store_bytes", "refit/gather_seconds", "refit/load_seconds", "refit/store_gb_per_s"
    }
    stats = RefitStats(transport="collective", buckets=2, bytes=10**9, gather_seconds=0.5, load_seconds=0.5)
    out = stats.pop()
    assert out["refit/broadcast_bytes"] == 1e9 and out["refit/broadcast_gb_per_s"] == pytest.approx(1.0)
    assert stats.pop()["refit/broadcast_bytes"] == 0.0


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"refit_transport": "nccl"}, "refit_transport"),
        ({"refit_transport": "cuda_ipc"}, "cuda_ipc shares CUDA memory between processes on one GPU, so it needs GPU workers"),
        ({"refit_transport": "cuda_ipc", "gpus_per_node": 2, "colocated": False}, "cuda_ipc needs colocated placement"),
        ({"refit_transport": "collective", "gpus_per_node": 2}, "NCCL, which cannot put two ranks of one group on one GPU"),
        ({"refit_transport": "collective", "refit_timeout_s": 0}, "refit_timeout_s"),
    ],
)
def test_bad_refit_transport_settings_are_config_errors(fields, message):
    with pytest.raises(ConfigError, match=message) as error:
        structure({"executor": "ray", **fields}, ClusterConfig)
    assert isinstance(error.value, ReinforgeError)


def test_valid_refit_transports():
    assert ClusterConfig().refit_transport == "object_store"
    assert ClusterConfig(executor="ray", refit_transport="collective").refit_transport == "collective"  # gloo on CPU
    assert ClusterConfig(refit_transport="collective", gpus_per_node=2, colocated=False).refit_transport == "collective"
    assert ClusterConfig(refit_transport="cuda_ipc", gpus_per_node=2).refit_transport == "cuda_ipc"


def test_a_group_that_cannot_form_names_the_address_and_port():
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    endpoint = RefitEndpoint()
    with pytest.raises(ReinforgeError, match=rf"gloo refit group at 127\.0\.0\.1:{port} \(rank 1 of 2.*GLOO_SOCKET_IFNAME"):
        endpoint.join("127.0.0.1", port, 1, 2, "cpu", timeout_s=1.0)
    assert endpoint.group is None and endpoint.store is None
    with pytest.raises(ReinforgeError, match="not set up on this worker"):
        endpoint.receive(flatten_bucket([("x", torch.zeros(1))], "cpu")[1])


def test_a_bucket_from_an_old_stream_is_refused_clearly():
    endpoint = RefitEndpoint()
    endpoint.stage(1, [("x", torch.ones(2))], "cpu", share=False)
    endpoint.forget_staged()
    with pytest.raises(ReinforgeError, match="refit bucket 1 is no longer staged"):
        endpoint.send(1)
