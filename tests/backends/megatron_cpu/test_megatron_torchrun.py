"""The `megatron` backend under `torchrun --nproc-per-node 2` (gloo on CPU, test-only shim).

Tensor parallel 2, data parallel 2 (Megatron DDP) and checkpoints saved by 2 ranks (the
distributed optimizer checks for CUDA tensor types: tests/gpu). The worker script (`_megatron_worker.py`) compares every 2-process result with
a single-process reference on the full batch; this test asserts on the differences, then loads
the tensor-parallel-2 checkpoint in this single process (tensor parallel 1: Megatron reshards).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from megatron_cpu.helpers import policy as make_policy
from reinforge.backends.training.megatron.backend import MegatronBackend
from reinforge.backends.training.megatron.config import MegatronConfig
from reinforge.core.run_config import OptimizerConfig, SchedulerConfig
from reinforge.testing.conformance_training import ConformanceNLLLoss, conformance_batch, weights
from reinforge.models.tiny_model import build_model
from tests.torchrun import run_torchrun

WORKER = Path(__file__).with_name("_megatron_worker.py")

TOLERANCES = {
    "tp_logprobs": 1e-5,
    "tp_logprobs_hot": 1e-5,
    "tp_loss": 1e-5,
    "tp_grad_norm": 1e-5,
    "tp_weights": 1e-5,
    "tp_export_weights": 1e-5,
    "dp_logprobs": 1e-5,
    "dp_loss": 1e-5,
    "dp_grad_norm": 1e-5,
    "dp_weights": 1e-5,
    "dp_rows_metric": 0.0,
    "load_weights": 0.0,
    "load_step": 0.0,
    "load_next_loss": 0.0,
    "load_next_lr": 0.0,
    "load_next_weights": 0.0,
}


@pytest.mark.distributed
def test_two_processes_match_the_single_process_reference(tmp_path):
    model_dir = build_model(tmp_path / "model", size="tiny", seed=0)
    out = tmp_path / "out"
    out.mkdir()
    run_torchrun([str(WORKER), str(model_dir), str(out)], timeout=400)

    results = json.loads((out / "results.json").read_text())
    too_far = {k: results[k] for k, tol in TOLERANCES.items() if not results[k] <= tol}
    assert not too_far, f"2-process results differ from the reference: {too_far}"
    assert results["tp_qkv_rows_per_rank"] == 128  # (4 query + 2x2 key/value heads) x 32 / 2 ranks
    assert results["dp_size"] == 2
    assert results["dp_microbatches"] == 5  # 5 rows -> 3 microbatches of 2, 3 rows -> 2 (+1 dummy pass)

    # The checkpoint written with tensor parallel 2 loads with tensor parallel 1 in one process,
    # and training continues exactly as the 2 ranks did.
    expected = torch.load(out / "adamw_weights.pt", weights_only=True)
    policy = make_policy(
        model_dir,
        logprob_batch_size=3,
        max_grad_norm=1.0,
        optimizer=OptimizerConfig(name="adamw", lr=1e-2, weight_decay=0.01),
        scheduler=SchedulerConfig(name="linear_warmup", warmup_steps=3, warmup_start_factor=0.5),
    )
    single = MegatronBackend(policy, MegatronConfig(device="cpu"))
    try:
        single.load(str(out / "ckpt"))
        assert single.step == 1 and single.grid.world_size == 1
        loaded = weights(single)
        assert max((loaded[k] - expected["saved"][k]).abs().max().item() for k in loaded) == 0.0
        metrics = single.train(conformance_batch(704, rows=8, width=24, seed=1), ConformanceNLLLoss())
        assert metrics["lr"] == pytest.approx(expected["lr"]) and metrics["loss"] == pytest.approx(expected["loss"], abs=1e-5)
        after = weights(single)
        assert max((after[k] - expected["after"][k]).abs().max().item() for k in after) <= 1e-5
    finally:
        single.shutdown()
