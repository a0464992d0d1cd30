"""Built-in training backends. Registering imports nothing heavy: only import paths."""

from __future__ import annotations

from reinforge.core.constructors import Capabilities
from reinforge.core.hookspecs import hookimpl
from reinforge.core.registry import Register


@hookimpl
def reinforge_register_training_backends(register: Register) -> None:
    register(
        "dtensor",
        "reinforge.backends.training.dtensor.backend:DTensorBackend",
        config="reinforge.backends.training.dtensor.config:DTensorConfig",
        requires=("torch", "transformers"),
        description="Hugging Face causal LM on PyTorch FSDP2 + DTensor tensor parallel (CPU and GPU)",
        capabilities=Capabilities(data_parallel=True, tensor_parallel=True, devices=("cpu", "cuda")),
    )
    register(
        "megatron",
        "reinforge.backends.training.megatron.backend:MegatronBackend",
        config="reinforge.backends.training.megatron.config:MegatronConfig",
        requires=("torch", "transformers", "megatron.core"),
        extra="megatron",
        description="Megatron-core GPTModel converted from Qwen2/Llama checkpoints: tensor parallel, distributed "
        "optimizer, recomputation (NVIDIA GPUs; tested on CPU through a test-only shim)",
    )
