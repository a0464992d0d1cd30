"""TEST-ONLY: run Megatron-core 0.16 on a CPU-only machine by routing its hard-coded CUDA calls to the CPU.

Why it exists: CI has no GPU, yet the `megatron` training backend should be tested for real
(conversion, forward, backward, the forward-backward schedule, DDP, Megatron's optimizer,
distributed checkpointing), not against a mock. Megatron-core assumes CUDA in ~250 places
(`torch.cuda.current_device()`, `device="cuda"` tensors, the CUDA RNG tracker, a CUDA-typed
assertion in gradient clipping); everything else it does is plain torch and torch.distributed,
which gloo runs on the CPU.

It must NEVER be imported by the library: it patches torch process-wide (a torch-function mode,
`Tensor.cuda`, `Tensor.to`, `torch.cuda.current_device`), which is acceptable in a test and wrong
anywhere else. `install()` is idempotent; `uninstall()` restores everything, so that the tests of
other packages in the same pytest process run on unpatched torch (conftest.py brackets this package).

What it changes, and why each is safe for the CPU tests:
- `torch.cuda.current_device()` returns "cpu", so `device=torch.cuda.current_device()` lands on the CPU.
- every torch call given `device="cuda"` (a torch-function mode entered for the whole process) gets
  "cpu" instead; `Tensor.cuda()` is the identity and `Tensor.to("cuda")` stays on the CPU.
- `CudaRNGStatesTracker.fork` is a no-op context: it only swaps CUDA RNG states (used for
  dropout, which the backend sets to 0).
- `clip_grad_by_total_norm_fp32` (as bound in Megatron's optimizer modules) is replaced by the same
  arithmetic without its `torch.cuda.FloatTensor` assertion and fused CUDA kernel.
- `torch.cuda.synchronize` / `empty_cache` become no-ops.
- `REINFORGE_TEST_CUDA_ON_CPU=1` is set, so the executors' device check lets `megatron` (declared
  CUDA-only) run on the CPU; without the shim a user gets that check's error, not a CUDA traceback.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from reinforge.core.constructors import CUDA_ON_CPU_ENV

_INSTALLED: list[dict[str, Any]] = []  # the originals, while installed


def _is_cuda(device: Any) -> bool:
    if isinstance(device, torch.device):
        return device.type == "cuda"
    if isinstance(device, str):
        return device.startswith("cuda")
    return isinstance(device, int)  # a bare index means a CUDA device in torch's API


def _cpu_device(kwargs: dict[str, Any]) -> dict[str, Any]:
    if _is_cuda(kwargs.get("device")):
        kwargs["device"] = "cpu"
    return kwargs


class _CudaToCpu(TorchFunctionMode):
    """Rewrites `device="cuda"` (or a CUDA torch.device / index) to the CPU in every torch call that takes one.

    A torch-function mode rather than wrapped factories: wrapping `torch.tensor` and friends in
    Python functions breaks transformers' weight loading under torch.distributed (it left
    RoPE buffers uninitialised), while a mode sees exactly the calls as torch dispatches them.
    """

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = _cpu_device(dict(kwargs or {}))
        return func(*args, **kwargs)


def _clip_grad_by_total_norm_cpu(parameters: Any, max_norm: float, total_norm: float, use_decoupled_grad: bool = False) -> None:
    """Megatron's clipping rule (scale by max_norm / (norm + 1e-6) when below 1), without its CUDA-only kernel."""
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    coefficient = max_norm / (total_norm + 1.0e-6)
    if coefficient >= 1.0:
        return
    for param in parameters:
        grad = param.decoupled_grad if use_decoupled_grad else param.grad
        if grad is not None:
            grad.detach().mul_(coefficient)


def install() -> None:
    """Patch torch and Megatron-core for CPU-only execution (idempotent)."""
    if _INSTALLED:
        return
    from megatron.core.optimizer import clip_grads, optimizer
    from megatron.core.tensor_parallel import random as mcore_random

    mode = _CudaToCpu()
    saved = {
        "mode": mode,
        "cuda": torch.Tensor.cuda,
        "to": torch.Tensor.to,
        "current_device": torch.cuda.current_device,
        "synchronize": torch.cuda.synchronize,
        "empty_cache": torch.cuda.empty_cache,
        "fork": mcore_random.CudaRNGStatesTracker.fork,
        "clip": clip_grads.clip_grad_by_total_norm_fp32,
    }
    mode.__enter__()
    original_to = saved["to"]

    def to(self: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        args = tuple("cpu" if _is_cuda(a) and not isinstance(a, bool) else a for a in args)
        return original_to(self, *args, **_cpu_device(kwargs))

    torch.Tensor.cuda = lambda self, *args, **kwargs: self  # type: ignore[method-assign]
    torch.Tensor.to = to  # type: ignore[method-assign]
    torch.cuda.current_device = lambda: "cpu"  # type: ignore[assignment]
    torch.cuda.synchronize = lambda *args, **kwargs: None  # type: ignore[assignment]
    torch.cuda.empty_cache = lambda: None  # type: ignore[assignment]
    mcore_random.CudaRNGStatesTracker.fork = lambda self, name=None: contextlib.nullcontext()  # type: ignore[method-assign]
    clip_grads.clip_grad_by_total_norm_fp32 = _clip_grad_by_total_norm_cpu
    optimizer.clip_grad_by_total_norm_fp32 = _clip_grad_by_total_norm_cpu
    os.environ[CUDA_ON_CPU_ENV] = "1"  # the executors' device check lets `megatron` (devices: cuda) run on the CPU
    _INSTALLED.append(saved)


def uninstall() -> None:
    """Undo `install` (a no-op when not installed)."""
    if not _INSTALLED:
        return
    from megatron.core.optimizer import clip_grads, optimizer
    from megatron.core.tensor_parallel import random as mcore_random

    saved = _INSTALLED.pop()
    os.environ.pop(CUDA_ON_CPU_ENV, None)
    saved["mode"].__exit__(None, None, None)
    torch.Tensor.cuda = saved["cuda"]  # type: ignore[method-assign]
    torch.Tensor.to = saved["to"]  # type: ignore[method-assign]
    torch.cuda.current_device = saved["current_device"]  # type: ignore[assignment]
    torch.cuda.synchronize = saved["synchronize"]  # type: ignore[assignment]
    torch.cuda.empty_cache = saved["empty_cache"]  # type: ignore[assignment]
    mcore_random.CudaRNGStatesTracker.fork = saved["fork"]  # type: ignore[method-assign]
    clip_grads.clip_grad_by_total_norm_fp32 = saved["clip"]
    optimizer.clip_grad_by_total_norm_fp32 = saved["clip"]
