"""The `dtensor` backend under `torchrun --nproc-per-node 2` (gloo on CPU): FSDP2, tensor parallel, checkpoints.

The worker script (`_dtensor_worker.py`) compares every 2-process result with a single-process
reference on the full batch and writes the largest differences; this test asserts on them, then
loads the 2-rank checkpoint in this (single, group-less) process, which DCP must reshard.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from reinforge.backends.training.dtensor.backend import DTensorBackend
from reinforge.core.run_config import OptimizerConfig, PolicyConfig, SchedulerConfig
from reinforge.testing.conformance_training import ConformanceNLLLoss, conformance_batch, weights
from reinforge.models.tiny_model import build_model
from tests.torchrun import run_torchrun

WORKER = Path(__file__).with_name("_dtensor_worker.py")

TOLERANCES = {
    "fsdp_logprobs": 1e-5,
    "fsdp_loss": 1e-5,
    "fsdp_grad_norm": 1e-5,
    "fsdp_weights": 1e-5,
    "fsdp_rows_metric": 0.0,
    "fsdp_unsharded_after_logprobs": 0.0,
    **{f"{variant}_{what}": 1e-5 for variant in ("fsdp_packed", "fsdp_token_budget", "tp_packed")
       for what in ("logprobs", "loss", "grad_norm", "weights")},
    **{f"{variant}_{what}": 1e-5 for variant in ("fsdp_shared", "tp_shared", "fsdp_shared_uneven")
       for what in ("logprobs", "loss", "grad_norm_rel", "weights")},
    "tp_logprobs": 1e-5,
    "tp_loss": 1e-5,
    "tp_grad_norm": 1e-5,
    "tp_weights": 1e-5,
    "tp_fsdp_grad_norm": 1e-5,
    "tp_fsdp_weights": 1e-5,
    "ddp_grad_norm": 1e-5,
    "ddp_weights": 1e-5,
    "load_weights": 0.0,
    "load_step": 0.0,
    "load_next_loss": 0.0,
    "load_next_lr": 0.0,
    "load_next_weights": 0.0,
    "export_weights": 1e-5,
    "dcp_to_hf_weights": 0.0,
}


@pytest.mark.distributed
def test_two_processes_match_the_single_process_reference(tmp_path):
    model_dir = build_model(tmp_path / "model", size="tiny", seed=0)
    out = tmp_path / "out"
    out.mkdir()
    run_torchrun([str(WORKER), str(model_dir), str(out)], timeout=240)

    results = json.loads((out / "results.json").read_text())
    assert results.keys() >= TOLERANCES.keys()
    too_far = {k: results[k] for k, tol in TOLERANCES.items() if not results[k] <= tol}
    assert not too_far, f"2-process results differ from the reference: {too_far}"
    assert results["fsdp_microbatches"] == 5  # 5 rows -> 3 microbatches of 2, 3 rows -> 2 (+1 dummy pass)
    assert results["fsdp_shared_uneven_microbatches"] == 5  # rank 0: 3 passes, rank 1: 2 and an idle shared pass

    # The checkpoint written by 2 FSDP ranks loads in one process without a group, and training
    # on the full batch continues exactly as the 2 ranks did on its halves.
    expected = torch.load(out / "adamw_weights.pt", weights_only=True)
    policy = PolicyConfig(
        model_name=str(model_dir),
        train_global_batch_size=8,
        train_micro_batch_size=2,
        logprob_batch_size=3,
        max_total_sequence_length=64,
        max_grad_norm=1.0,
        optimizer=OptimizerConfig(name="adamw", lr=1e-2, weight_decay=0.01),
        scheduler=SchedulerConfig(name="linear_warmup", warmup_steps=3, warmup_start_factor=0.5),
    )
    single = DTensorBackend(policy)
    single.load(str(out / "ckpt"))
    assert single.step == 1 and not single.ctx.distributed
    loaded = weights(single)
    assert max((loaded[k] - expected["saved"][k]).abs().max().item() for k in loaded) == 0.0
    metrics = single.train(conformance_batch(704, rows=8, width=24, seed=1), ConformanceNLLLoss())
    assert metrics["lr"] == pytest.approx(expected["lr"]) and metrics["loss"] == pytest.approx(expected["loss"], abs=1e-5)
    after = weights(single)
    assert max((after[k] - expected["after"][k]).abs().max().item() for k in after) <= 1e-5
