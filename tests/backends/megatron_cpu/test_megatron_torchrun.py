"""The `megatron` backend under `torchrun --nproc-per-node 2` (gloo on CPU, test-only shim).

Tensor parallel 2, data parallel 2 (Megatron DDP) and checkpoints saved by 2 ranks (the
distributed optimizer checks for CUDA tensor types: tests/gpu). The worker script (`_megatron_worker.py`) compares every 2-process result with
a single-process reference on the full batch; this test asserts on the differences, then loads
the tensor-parallel-2 checkpoint in this single process (tensor parallel 1: Megatron reshards).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from reinforge.backends.training.megatron.backend import MegatronBackend
from reinforge.backends.training.megatron.config import MegatronConfig
from tests.backends.reference_step import (
    ROUND_TRIP_TOLERANCES,
    STEP_RESULTS,
    adamw_policy,
    assert_resumes_like_the_ranks,
    run_reference_worker,
)

WORKER = Path(__file__).with_name("_megatron_worker.py")

TOLERANCES = {
    **{f"{case}_{what}": 1e-5 for case in ("tp", "dp") for what in STEP_RESULTS},
    "tp_logprobs_hot": 1e-5,
    "tp_export_weights": 1e-5,
    "dp_rows_metric": 0.0,
    **ROUND_TRIP_TOLERANCES,
}


@pytest.mark.distributed
def test_two_processes_match_the_single_process_reference(tmp_path):
    model_dir, out, results = run_reference_worker(WORKER, tmp_path, TOLERANCES, timeout=400)
    assert results["tp_qkv_rows_per_rank"] == 128  # (4 query + 2x2 key/value heads) x 32 / 2 ranks
    assert results["dp_size"] == 2
    assert results["dp_microbatches"] == 5  # 5 rows -> 3 microbatches of 2, 3 rows -> 2 (+1 dummy pass)

    # The checkpoint written with tensor parallel 2 loads with tensor parallel 1 in one process,
    # and training continues exactly as the 2 ranks did.
    single = MegatronBackend(adamw_policy(model_dir), MegatronConfig(device="cpu"))
    try:
        single.load(str(out / "ckpt"))
        assert single.step == 1 and single.grid.world_size == 1
        assert_resumes_like_the_ranks(single, out)
    finally:
        single.shutdown()
