"""`MegatronBackend`: the policy as a Megatron-core `GPTModel`, converted from a Hugging Face checkpoint.

Why this backend: Megatron-core is what large models (past ~8B parameters) train on: tensor
parallel linears with vocabulary-parallel logprobs, a distributed optimizer, activation
recomputation and its own forward-backward schedule. It sits behind the same `TrainingBackend`
seam as `dtensor`, takes the same `PolicyConfig`, reads and writes Hugging Face folders, and
yields Hugging Face-named weights for refit, so GRPO, DPO and SFT run unchanged on either.

SPMD: every method is collective when there are several ranks (torchrun or a Ray worker group);
all ranks call it together with their own rows (the ranks of one data-parallel replica receive
the same rows). Shapes as in `reinforge.core.interfaces`: `input_ids  # [B, T]` right-padded,
logprobs `# [B, T]` aligned with it (column 0 and padding are 0).

Megatron-core assumes CUDA; on a CPU-only machine it runs only under the test suite's shim
(tests/backends/megatron/cpu_shim.py), never in a user's process.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch

from reinforge.backends.training.backend_lifecycle import ensure_live, free_device_cache, move_optimizer_state, stream_buckets
from reinforge.backends.training.hf_folders import read_model_config
from reinforge.backends.training.lr_schedule import lr_multiplier
from reinforge.backends.training.megatron.checkpointing import load_checkpoint, save_checkpoint
from reinforge.backends.training.megatron.config import MegatronConfig
from reinforge.backends.training.megatron.convert import spec_from_hf_config
from reinforge.backends.training.megatron.export import checkpoint_to_hf, write_hf
from reinforge.backends.training.megatron.model import (
    DTYPES,
    build_gpt,
    check_layout,
    gather_hf,
    load_hf_weights,
)
from reinforge.backends.training.megatron.runtime import MegatronGrid
from reinforge.backends.training.megatron.training import compute_logprobs, train_step
from reinforge.backends.training.seam_checks import as_batch, check_temperature
from reinforge.core.batch import Batch
from reinforge.core.errors import ReinforgeError

if TYPE_CHECKING:
    from reinforge.core.interfaces import LossFn
    from reinforge.core.run_config import PolicyConfig


class MegatronBackend:
    """Implements `TrainingBackend` (see the module docstring); the constructor matches `DTensorBackend`'s.

    `named_weights` yields each tied tensor once, under its first name
    (`model.embed_tokens.weight`, not `lm_head.weight`), as `dtensor` does.
    """

    # `reinforge convert` looks for this on the backend class: (checkpoint_dir, base_model_dir, out_dir, *, tokenizer_dir).
    checkpoint_to_hf = staticmethod(checkpoint_to_hf)

    def __init__(
        self, policy: PolicyConfig, options: MegatronConfig | None = None, *, need_reference: bool = False, seed: int = 0
    ) -> None:
        self.policy = policy
        self.options = options or MegatronConfig()
        self.seed = seed
        torch.manual_seed(seed)
        self.hf_config = read_model_config(policy.model_name)
        self.spec = spec_from_hf_config(self.hf_config)
        check_layout(self.spec, self.options)
        self._check_optimizer()
        self.grid = MegatronGrid.acquire(self.options, seed)
        self.step = 0  # optimizer steps taken (restored by load)
        self.offloaded = False
        self._reference: Any = None
        try:
            self.gpt: Any = self._build_gpt(train=True)
            self.model: Any = self._wrap_ddp(self.gpt)
            self.optimizer: Any = self._build_optimizer()
            if need_reference:
                self._reference_model()
        except BaseException:
            self.grid.release()  # a grid this backend joined must not outlive it
            raise

    # ------------------------------------------------------------------ building
    def _check_optimizer(self) -> None:
        config = self.policy.optimizer
        if config.name == "adam" and config.weight_decay > 0:
            raise ReinforgeError(
                "policy.optimizer.name 'adam' with weight_decay > 0 (L2-coupled decay) is not offered by Megatron-core, "
                "whose Adam decouples weight decay; use name: adamw (the same update), or weight_decay: 0"
            )
        if config.name == "sgd" and self.options.use_distributed_optimizer:
            raise ReinforgeError(
                "backend_cfg.use_distributed_optimizer supports Adam/AdamW only (Megatron-core's sharded optimizer "
                "checkpoints assume Adam's state); use policy.optimizer.name: adamw, or use_distributed_optimizer: false"
            )

    def _build_gpt(self, *, train: bool) -> Any:
        gpt = build_gpt(self.spec, self.options, self.policy.precision, self.grid)
        load_hf_weights(gpt, self.policy.model_name, self.spec, self.grid)
        if not train:
            gpt.requires_grad_(False)
            gpt.eval()
        return gpt

    def _wrap_ddp(self, gpt: Any) -> Any:
        from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig, finalize_model_grads

        ddp_config = DistributedDataParallelConfig(
            grad_reduce_in_fp32=True,
            overlap_grad_reduce=False,
            use_distributed_optimizer=self.options.use_distributed_optimizer,
        )
        model = DistributedDataParallel(config=gpt.config, ddp_config=ddp_config, module=gpt)
        # The schedule calls these: one gradient reduction after the last microbatch, none before.
        gpt.config.finalize_model_grads_func = finalize_model_grads
        gpt.config.no_sync_func = model.no_sync
        return model

    def _build_optimizer(self) -> Any:
        from megatron.core.optimizer import OptimizerConfig as McoreOptimizerConfig
        from megatron.core.optimizer import get_megatron_optimizer

        config = self.policy.optimizer
        mcore = McoreOptimizerConfig(
            optimizer="sgd" if config.name == "sgd" else "adam",  # Megatron's adam is AdamW (decoupled decay)
            lr=config.lr,
            weight_decay=config.weight_decay,
            adam_beta1=config.betas[0],
            adam_beta2=config.betas[1],
            adam_eps=config.eps,
            sgd_momentum=0.0,
            bf16=self.policy.precision == "bfloat16",
            params_dtype=DTYPES[self.policy.precision],
            use_distributed_optimizer=self.options.use_distributed_optimizer,
            clip_grad=0.0,  # clipped in train_step, after the finiteness check
        )
        # config_overrides={}: weight decay on every parameter, as the dtensor backend does.
        return get_megatron_optimizer(mcore, [self.model], config_overrides={})

    def _reference_model(self) -> Any:
        """The frozen reference policy: `policy.model_name` as loaded, never trained (built on first use)."""
        if self._reference is None:
            self._reference = self._build_gpt(train=False)
        return self._reference

    def _live(self) -> Any:
        ensure_live(self, self.gpt, "megatron")
        return self.model

    # ------------------------------------------------------------------ the TrainingBackend seam
    def train(self, batch: Batch, loss_fn: LossFn, temperature: float = 1.0) -> dict[str, float]:
        """One optimizer step over this rank's rows at the scheduled learning rate."""
        check_temperature(temperature)
        model = self._live()
        metrics = train_step(
            model,
            self.gpt,
            self.optimizer,
            self.grid,
            as_batch(batch),
            loss_fn,
            micro_batch_size=self.policy.train_micro_batch_size,
            max_length=self.policy.max_total_sequence_length,
            max_grad_norm=self.policy.max_grad_norm,
            temperature=temperature,
            lr=self.policy.optimizer.lr * lr_multiplier(self.policy.scheduler, self.step),
            step=self.step,
            chunk_size=self.options.logprob_chunk_size,
            sequence_parallel=self.options.sequence_parallel,
        )
        self.step += 1
        return metrics

    def logprobs(self, batch: Batch, temperature: float = 1.0) -> torch.Tensor:
        """Per-token logprobs `# [B, T]` (CPU, float32) under the current weights."""
        check_temperature(temperature)
        model = self._live()
        return self._score(model, self.gpt, batch, temperature, "logprobs")

    def reference_logprobs(self, batch: Batch, temperature: float = 1.0) -> torch.Tensor:
        """Per-token logprobs `# [B, T]` under the frozen reference (loaded on first call)."""
        check_temperature(temperature)
        self._live()
        reference = self._reference_model()
        return self._score(reference, reference, batch, temperature, "reference_logprobs")

    def _score(self, model: Any, gpt: Any, batch: Batch, temperature: float, what: str) -> torch.Tensor:
        return compute_logprobs(
            model,
            gpt,
            self.grid,
            as_batch(batch),
            batch_size=self.policy.logprob_batch_size,
            max_length=self.policy.max_total_sequence_length,
            temperature=temperature,
            chunk_size=self.options.logprob_chunk_size,
            sequence_parallel=self.options.sequence_parallel,
            what=what,
        )

    def named_weights(self, bucket_bytes: int | None = None) -> Iterator[list[tuple[str, torch.Tensor]]]:
        """Buckets of (Hugging Face name, full tensor), each about `bucket_bytes` (a larger tensor goes alone).

        Each parameter is gathered over the tensor-parallel ranks (collective) and converted
        (QKV and gate/up split) on the compute device, in the parameters' dtype. A tensor may
        share memory with the live parameter: copy it if you keep it past the next `train`.
        """
        limit = self.options.refit_bucket_bytes if bucket_bytes is None else bucket_bytes
        self._live()
        yield from stream_buckets(gather_hf(self.gpt, self.spec, self.grid), limit)

    def save(self, directory: str) -> None:
        """Model + optimizer (Megatron distributed checkpoint), step and RNG state; see `checkpointing`."""
        self._live()
        info = {
            "model_name": self.policy.model_name,
            "precision": self.policy.precision,
            "world_size": self.grid.world_size,
            "tensor_parallel_size": self.grid.tp_size,
            "pipeline_parallel_size": self.grid.pp_size,
        }
        save_checkpoint(directory, gpt=self.gpt, optimizer=self.optimizer, step=self.step, grid=self.grid, info=info)

    def load(self, directory: str) -> None:
        """Restore `save`'s state into this backend (Megatron reshards to this layout)."""
        self._live()
        self.step = load_checkpoint(directory, gpt=self.gpt, optimizer=self.optimizer, grid=self.grid)
        self.optimizer.reload_model_params()  # bf16: the fp32 master copies follow the loaded weights

    def export_hf(self, directory: str) -> None:
        """Write the current weights as a Hugging Face folder (rank 0 writes; every rank must call)."""
        self._live()
        state = {name: tensor.detach().cpu() for name, tensor in gather_hf(self.gpt, self.spec, self.grid)}
        if self.spec.tie_word_embeddings:  # the Hugging Face model has both names for the one tensor
            state["lm_head.weight"] = state["model.embed_tokens.weight"]
        if self.grid.is_writer:
            write_hf(state, self.hf_config, directory, model_name=self.policy.model_name,
                     tokenizer_dir=self.policy.tokenizer_name or self.policy.model_name)
        self.grid.barrier()

    def offload(self) -> None:
        """Move weights, gradient buffers and optimizer state to the CPU (a no-op on CPU)."""
        if not self.offloaded and self.grid.device.type == "cuda" and self.gpt is not None:
            self.model.offload_grad_buffers()
            self._move(torch.device("cpu"))
        self.offloaded = True

    def onload(self) -> None:
        """Undo `offload`."""
        if self.offloaded:
            self.offloaded = False
            if self.grid.device.type == "cuda" and self.gpt is not None:
                self._move(self.grid.device)
                self.model.restore_grad_buffers()

    def _move(self, device: torch.device) -> None:
        # Parameters may be views into DDP's contiguous buffers, so they move as `.data` swaps.
        for module in (self.gpt, self._reference):
            if module is not None:
                for param in module.parameters():
                    param.data = param.data.to(device, non_blocking=True)
        move_optimizer_state(getattr(self.optimizer, "state", {}), device, non_blocking=True)
        if device.type == "cpu":
            free_device_cache()

    def shutdown(self) -> None:
        """Drop the models and optimizer, and give back Megatron's parallel grid."""
        self.gpt = None
        self.model = None
        self._reference = None
        self.optimizer = None
        gc.collect()
        if self.grid.device.type == "cuda":
            torch.cuda.empty_cache()
        self.grid.release()


__all__ = ["MegatronBackend"]
