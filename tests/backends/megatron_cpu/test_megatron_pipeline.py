"""Pipeline parallel 2 of the `megatron` backend under `torchrun --nproc-per-node 2` (gloo on CPU, test-only shim).

Megatron-core's 1F1B schedule runs on the CPU as it is: its point-to-point sends
(`batch_isend_irecv`) work over gloo, and the shim's routing of `device="cuda"` covers its
buffers. The worker (`_megatron_pp_worker.py`) splits the 2-layer models into 2 stages and
runs every seam method; this test asserts that both ranks returned the same values and that
they equal pipeline parallel 1's, computed here in one process: a tied-embedding Qwen2 (the
output layer on the last stage is a copy of the first stage's embedding, its gradient summed
with the embedding's) and an untied Llama.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from megatron_cpu.helpers import build_tiny_llama
from megatron_cpu.pipeline_cases import compare_with_one_stage, grpo_case, run_worker
from reinforge.backends.training.megatron.config import MegatronConfig
from reinforge.models.tiny_model import build_model

WORKER = Path(__file__).with_name("_megatron_pp_worker.py")


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("pipeline")
    qwen = build_model(root / "qwen", size="tiny", seed=0)
    llama = build_tiny_llama(qwen, root / "llama", seed=1)
    cases = {"qwen2_tied": grpo_case(qwen, seed=0), "llama_untied": grpo_case(llama, seed=1)}
    out = root / "out"
    out.mkdir()
    run_worker(WORKER, cases, out)
    return out, cases


@pytest.mark.distributed
@pytest.mark.parametrize("name", ["qwen2_tied", "llama_untied"])
def test_pipeline_parallel_2_equals_one_stage(pipeline_run, name):
    out, cases = pipeline_run
    compare_with_one_stage(name, cases[name], out, device="cpu", atol=1e-5)


def test_context_parallel_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="only in Transformer Engine's attention"):
        MegatronConfig(context_parallel_size=2)
