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
        capabilities=Capabilities(data_parallel=True, tensor_parallel=True, lora=True, devices=("cpu", "cuda")),
    )
    register(
        "megatron",
        "reinforge.backends.training.megatron.backend:MegatronBackend",
        config="reinforge.backends.training.megatron.config:MegatronConfig",
        requires=("torch", "transformers", "megatron.core"),
        extra="megatron",
        description="Megatron-core GPTModel converted from Qwen2/Llama checkpoints: tensor parallel, distributed "
        "optimizer, recomputation (NVIDIA GPUs; tested on CPU through a test-only shim)",
        # Data parallel (DDP / distributed optimizer over the replicas) and tensor parallel (tensor_parallel_size);
        # pipeline and context parallel stay 1 under the executors. CUDA only: Megatron-core calls CUDA in
        # hundreds of places, so on a CPU-only machine the executor refuses it with a device error before
        # any worker starts. The test suite's CPU shim sets REINFORGE_TEST_CUDA_ON_CPU (see
        # core/constructors.py: cuda_emulated_on_cpu), which lets exactly those shimmed runs through.
        # No LoRA yet (lora=False): policy.lora.enabled is refused before any worker starts.
        capabilities=Capabilities(data_parallel=True, tensor_parallel=True, devices=("cuda",)),
    )
