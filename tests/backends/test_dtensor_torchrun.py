"""The `dtensor` backend under `torchrun --nproc-per-node 2` (gloo on CPU): FSDP2, tensor parallel, checkpoints.

The worker script (`_dtensor_worker.py`) compares every 2-process result with a single-process
reference on the full batch and writes the largest differences; this test asserts on them, then
loads the 2-rank checkpoint in this (single, group-less) process, which DCP must reshard.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from reinforge.backends.training.dtensor.backend import DTensorBackend
from tests.backends.reference_step import (
    ROUND_TRIP_TOLERANCES,
    STEP_RESULTS,
    adamw_policy,
    assert_resumes_like_the_ranks,
    run_reference_worker,
)

WORKER = Path(__file__).with_name("_dtensor_worker.py")

TOLERANCES = {
    **{f"{case}_{what}": 1e-5 for case in ("fsdp", "fsdp_packed", "fsdp_token_budget", "tp", "tp_packed") for what in STEP_RESULTS},
    # shared prompts sum a gradient in another order: the grad norm is held relative to the reference's
    **{f"{case}_{what}": 1e-5 for case in ("fsdp_shared", "tp_shared", "fsdp_shared_uneven")
       for what in ("logprobs", "loss", "grad_norm_rel", "weights")},
    **{f"{case}_{what}": 1e-5 for case in ("tp_fsdp", "ddp") for what in ("grad_norm", "weights")},
    "fsdp_rows_metric": 0.0,
    "fsdp_unsharded_after_logprobs": 0.0,
    "export_weights": 1e-5,
    "dcp_to_hf_weights": 0.0,
    **ROUND_TRIP_TOLERANCES,
}


@pytest.mark.distributed
def test_two_processes_match_the_single_process_reference(tmp_path):
    model_dir, out, results = run_reference_worker(WORKER, tmp_path, TOLERANCES, timeout=240)
    assert results["fsdp_microbatches"] == 5  # 5 rows -> 3 microbatches of 2, 3 rows -> 2 (+1 dummy pass)
    assert results["fsdp_shared_uneven_microbatches"] == 5  # rank 0: 3 passes, rank 1: 2 and an idle shared pass

    # The checkpoint written by 2 FSDP ranks loads in one process without a group, and training
    # on the full batch continues exactly as the 2 ranks did on its halves.
    single = DTensorBackend(adamw_policy(model_dir))
    single.load(str(out / "ckpt"))
    assert single.step == 1 and not single.ctx.distributed
    assert_resumes_like_the_ranks(single, out)
