"""The README quickstart with its generator line swapped to vLLM, for real on CPU (the vLLM test stage)."""

from __future__ import annotations

import pytest

pytest.importorskip("vllm", reason="vllm is not installed in this environment; scripts/test.sh runs these in .venv-vllm")

from tests.integration.test_quickstart import check_two_steps_ran, run_quickstart  # noqa: E402

pytestmark = pytest.mark.vllm


def test_quickstart_with_vllm_generation_in_one_line(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
    swap = "rf.backends.VLLMGeneration(enforce_eager=True, kv_cache_space_gb=1, enable_prefix_caching=False, "
    namespace = run_quickstart(tmp_path, monkeypatch, tiny_model_dir, swap=swap)
    trainer = namespace["trainer"]
    assert type(trainer.run.generation).__name__ == "VllmGenerationBackend"
    check_two_steps_ran(trainer, logprob_atol=1e-2)  # vLLM's CPU kernels differ from the trainer's in the 3rd decimal
