"""`DTensorBackend`: the policy as a Hugging Face causal LM on FSDP2 + DTensor tensor parallel.

Why this backend: it needs nothing beyond torch and transformers, trains for real in one CPU
process (tests, laptops, the CPU demo), and the same code scales to many GPUs under torchrun or
a Ray worker group, where each process calls the same methods on its own rows (SPMD): every
method below is collective when a process group exists, so all ranks must call it together.

Shapes: rows are right-padded `input_ids  # [B, T]` with `input_lengths  # [B]`; logprobs
`# [B, T]` are aligned with `input_ids` (column 0 and padding are 0). See `reinforge.core.interfaces`.

With `policy.lora.enabled` (see `lora.py`): adapters are added after loading and before parallelising,
only they train and have optimizer state, the reference policy is this same module with its adapters
off (no copy), refits and `export_hf` send merged weights under the base's names, and checkpoints hold
the adapters and their optimizer state only.
"""

from __future__ import annotations

import gc
import logging
import pickle
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import attrs
import torch

from reinforge.backends.kit import own_weights
from reinforge.backends.training.backend_lifecycle import ensure_live, free_device_cache, move_optimizer_state, stream_buckets
from reinforge.backends.training.cpu_allocator import keep_freed_memory
from reinforge.backends.training.dtensor.checkpointing import (
    dcp_to_hf,
    full_state_dict,
    load_checkpoint,
    save_checkpoint,
)
from reinforge.backends.training.dtensor.config import DTensorConfig, check_option_combinations, shares_prompts
from reinforge.backends.training.dtensor.distributed import ParallelContext
from reinforge.backends.training.dtensor.logprobs import PolicyModule, check_packing, check_shared_prompts
from reinforge.backends.training.dtensor.lora import (
    LoRALinear,
    adapters_disabled,
    check_saved_lora,
    inject_adapters,
    merge_state_dict,
    merged_weight,
)
from reinforge.backends.training.dtensor.memory import ModelShape, estimate_training_memory, measured_peak
from reinforge.backends.training.dtensor.optim import build_optimizer, build_scheduler, restore_kernel_options
from reinforge.backends.training.dtensor.parallelize import check_tensor_parallel, is_dtensor, parallelize, reshard
from reinforge.backends.training.dtensor.training import compute_logprobs, train_step
from reinforge.backends.training.hf_folders import read_model_config, write_hf_folder
from reinforge.backends.training.seam_checks import as_batch, check_temperature
from reinforge.core.batch import Batch
from reinforge.core.errors import ReinforgeError
from reinforge.core.model_folder import refused_weights

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from reinforge.core.interfaces import LossFn
    from reinforge.core.run_config import PolicyConfig

log = logging.getLogger(__name__)
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


class DTensorBackend:
    """Implements `TrainingBackend` (see the module docstring).

    `train(batch, loss_fn, temperature=1.0)` takes `temperature` as a keyword (the sampling
    temperature of the rollouts, so trainer and generator logprobs agree) rather than batch
    metadata, so that the same batch can be scored at several temperatures. `named_weights`
    yields each tied tensor once, under its first name (`model.embed_tokens.weight`, not
    `lm_head.weight`): receivers that tie weights (HF models, vLLM) update both.
    """

    # `reinforge convert` looks for this on the backend class: (dcp_dir, base_model_dir, out_dir, *, tokenizer_dir).
    checkpoint_to_hf = staticmethod(dcp_to_hf)

    def __init__(
        self, policy: PolicyConfig, options: DTensorConfig | None = None, *, need_reference: bool = False, seed: int = 0
    ) -> None:
        self.policy = policy
        self.options = options or DTensorConfig()
        check_option_combinations(self.options)
        self.seed = seed
        torch.manual_seed(seed)
        check_tensor_parallel(read_model_config(policy.model_name), self.options.tensor_parallel_size)
        self.ctx = ParallelContext.create(self.options)
        if self.ctx.device.type == "cpu" and self.options.keep_freed_memory:
            keep_freed_memory()  # before the model loads, so its blocks come from the heap too
        self.step = 0  # optimizer steps taken (restored by load)
        self.offloaded = False
        self._reference: PolicyModule | None = None
        try:
            self.module: PolicyModule | None = self._build(train=True)
            params = [p for p in self.module.parameters() if p.requires_grad]
            # torch's foreach kernels cannot mix plain tensors with DTensors on other meshes (TP keeps embeddings plain).
            foreach = False if self.ctx.tp_size > 1 else None
            self.optimizer = build_optimizer(params, policy.optimizer, foreach=foreach)
            # What build_optimizer chose (fused or foreach), put back after a checkpoint's load_state_dict.
            self._kernel = {key: self.optimizer.param_groups[0].get(key) for key in ("fused", "foreach")}
            self.scheduler = build_scheduler(self.optimizer, policy.scheduler)
            if need_reference and not policy.lora.enabled:  # with LoRA the reference is the base: adapters off
                self._reference_module()
            # Reported with the first train() metrics (train/memory_estimate_bytes), beside what was measured.
            self.memory_estimate = estimate_training_memory(
                ModelShape.from_model(self.module.causal_lm),
                policy,
                self.options,
                need_reference=need_reference,
                shards=(self.ctx.dp_size if self.ctx.fsdp else 1) * self.ctx.tp_size,
                foreach_optimizer=self.ctx.device.type == "cuda",
                fused_optimizer=bool(self._kernel.get("fused")),
            )
            self._estimate_reported = False
        except BaseException:
            self.ctx.close()  # a group this backend created must not outlive it
            raise

    # ------------------------------------------------------------------ building
    def _build(self, *, train: bool) -> PolicyModule:
        """Load `policy.model_name` in `policy.precision` and parallelise it for this rank."""
        from transformers import AutoModelForCausalLM

        name = self.policy.model_name
        try:
            causal_lm = AutoModelForCausalLM.from_pretrained(name, dtype=_DTYPES[self.policy.precision])
        except pickle.UnpicklingError as exc:  # a pytorch_model.bin holding more than tensors
            raise refused_weights(name, exc, setting="policy.model_name") from None
        except (OSError, ValueError) as exc:
            raise ReinforgeError(
                f"cannot load the model '{name}' ({exc.__class__.__name__}: {str(exc).splitlines()[0]}); "
                "check policy.model_name (a Hugging Face folder or hub name)"
            ) from None
        if self.ctx.device.type == "cpu":
            own_weights(causal_lm)  # out of the checkpoint's mmap (on a GPU the move to the device copies anyway)
        module = PolicyModule(causal_lm, self.options.logprob_chunk_size)
        if not train:
            module.requires_grad_(False)
        elif self.policy.lora.enabled:
            layers = inject_adapters(causal_lm, self.policy.lora)  # before parallelize: TP and FSDP place the adapters too
            trainable = sum(p.numel() for p in causal_lm.parameters() if p.requires_grad)
            log.info("LoRA: %d adapted layers, %d trainable parameters (rank %d)", len(layers), trainable, self.policy.lora.dim)
        parallelize(module, causal_lm, self.ctx, self.options, train=train)
        if self.options.sequence_packing:
            check_packing(module, self.ctx.device)
            reshard(module)
        if shares_prompts(self.options, scoring=True) or (train and shares_prompts(self.options, scoring=False)):
            try:
                check_shared_prompts(module, self.ctx.device)
            except ReinforgeError as exc:
                if self.options.share_prompt_forward is not None:
                    raise
                # The default falls back to the padded path; every rank probes the same model, so all agree.
                log.warning("share_prompt_forward is off: %s", exc)
                self.options = attrs.evolve(self.options, share_prompt_forward=False)
            reshard(module)
        return module

    def _reference_module(self) -> PolicyModule:
        """The frozen reference policy: `policy.model_name` as loaded, never trained (built on first use)."""
        if self._reference is None:
            self._reference = self._build(train=False)
            self._reference.eval()
        return self._reference

    @property
    def model(self) -> PreTrainedModel:
        """The live Hugging Face model (its parameters are DTensors under FSDP or tensor parallel)."""
        return self._live().causal_lm

    def _live(self) -> PolicyModule:
        return ensure_live(self, self.module, "dtensor")

    # ------------------------------------------------------------------ the TrainingBackend seam
    def train(self, batch: Batch, loss_fn: LossFn, temperature: float = 1.0) -> dict[str, float]:
        """One optimizer step over this rank's rows; the LR scheduler steps once per call."""
        check_temperature(temperature)
        metrics = train_step(
            self._live(),
            self.optimizer,
            self.ctx,
            as_batch(batch),
            loss_fn,
            micro_batch_size=self.policy.train_micro_batch_size,
            max_length=self.policy.max_total_sequence_length,
            max_grad_norm=self.policy.max_grad_norm,
            temperature=temperature,
            step=self.step,
            options=self.options,
        )
        self.scheduler.step()
        self.step += 1
        metrics.update(measured_peak(self.ctx.device))
        if not self._estimate_reported:
            metrics["memory_estimate_bytes"] = float(self.memory_estimate.total)
            self._estimate_reported = True
        return metrics

    def logprobs(self, batch: Batch, temperature: float = 1.0) -> torch.Tensor:
        """Per-token logprobs `# [B, T]` (CPU, float32) under the current weights."""
        check_temperature(temperature)
        return self._score(self._live(), batch, temperature, "logprobs")

    def reference_logprobs(self, batch: Batch, temperature: float = 1.0) -> torch.Tensor:
        """Per-token logprobs `# [B, T]` under the frozen reference (loaded on first call; with LoRA, the
        live module with its adapters off, which is the base model)."""
        check_temperature(temperature)
        live = self._live()
        if self.policy.lora.enabled:
            with adapters_disabled(live):
                return self._score(live, batch, temperature, "reference_logprobs")
        return self._score(self._reference_module(), batch, temperature, "reference_logprobs")

    def _score(self, module: PolicyModule, batch: Batch, temperature: float, what: str) -> torch.Tensor:
        return compute_logprobs(
            module,
            self.ctx,
            as_batch(batch),
            batch_size=self.policy.logprob_batch_size,
            max_length=self.policy.max_total_sequence_length,
            temperature=temperature,
            what=what,
            options=self.options,
        )

    def named_weights(self, bucket_bytes: int | None = None) -> Iterator[list[tuple[str, torch.Tensor]]]:
        """Buckets of (Hugging Face name, full tensor), each about `bucket_bytes` (a larger tensor goes alone).

        Tensors are gathered one at a time (`DTensor.full_tensor()`, collective), on the compute
        device, in the parameters' dtype. A tensor may share memory with the live parameter:
        copy it if you keep it past the next `train`. With LoRA an adapted layer's weight is sent
        merged, `W + alpha/dim * B A` (computed in float32), and the adapters themselves are not sent.
        """
        limit = self.options.refit_bucket_bytes if bucket_bytes is None else bucket_bytes
        yield from stream_buckets(self._full_tensors(), limit)

    def _full_tensors(self) -> Iterator[tuple[str, torch.Tensor]]:
        model = self.model
        for name, tensor in _hf_tensors(model):
            owner, _, leaf = name.rpartition(".")
            layer = model.get_submodule(owner) if owner else model
            if isinstance(layer, LoRALinear):
                if leaf in ("lora_A", "lora_B"):
                    continue  # merged into the layer's weight
                if leaf == "weight":
                    full = [self._full(t) for t in (layer.weight, layer.lora_A, layer.lora_B)]
                    yield name, merged_weight(*full, layer.scale)
                    continue
            yield name, self._full(tensor)

    def _full(self, tensor: torch.Tensor) -> torch.Tensor:
        if is_dtensor(tensor):
            tensor = tensor.to(self.ctx.device).full_tensor()
        return tensor.detach()

    def save(self, directory: str) -> None:
        """Model + optimizer (DCP), scheduler, step and RNG state; see `checkpointing` for the layout."""
        lora = self.policy.lora
        info = {
            "model_name": self.policy.model_name,
            "precision": self.policy.precision,
            "world_size": self.ctx.world_size,
            "tensor_parallel_size": self.ctx.tp_size,
            "lora": attrs.asdict(lora) if lora.enabled else None,  # dcp_to_hf merges with its alpha / dim
        }
        save_checkpoint(
            directory,
            causal_lm=self.model,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            step=self.step,
            ctx=self.ctx,
            info=info,
            trainable_only=lora.enabled,
        )

    def load(self, directory: str) -> None:
        """Restore `save`'s state into this backend (any world size; DCP reshards)."""
        check_saved_lora(directory, self.policy.lora)
        self.step = load_checkpoint(
            directory,
            causal_lm=self.model,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            ctx=self.ctx,
            trainable_only=self.policy.lora.enabled,
        )
        restore_kernel_options(self.optimizer, self._kernel)

    def export_hf(self, directory: str) -> None:
        """Write the current weights as a Hugging Face folder (rank 0 writes; every rank must call); with LoRA, merged."""
        state_dict = full_state_dict(self.model, self.ctx)
        if self.policy.lora.enabled and self.ctx.is_writer:
            state_dict = merge_state_dict(state_dict, self.policy.lora.scale)
        if self.ctx.is_writer:
            write_hf_folder(
                state_dict,
                self.model.config,
                directory,
                generation_config=self.model.generation_config,
                tokenizer_dir=self.policy.tokenizer_name or self.policy.model_name,
            )
        self.ctx.barrier()

    def offload(self) -> None:
        """Move parameters and optimizer state to the CPU (no-op on CPU, or when FSDP already offloads)."""
        if not self.offloaded:
            self._move(torch.device("cpu"))
        self.offloaded = True

    def onload(self) -> None:
        """Move them back to the compute device."""
        if self.offloaded:
            self.offloaded = False
            self._move(self.ctx.device)

    def _move(self, device: torch.device) -> None:
        if self.ctx.device.type == "cpu" or self.options.cpu_offload or self.module is None:
            return
        for module in (self.module, self._reference):
            if module is not None:
                module.to(device)
        move_optimizer_state(self.optimizer.state, device)
        if device.type == "cpu":
            free_device_cache()

    def shutdown(self) -> None:
        """Drop the models and optimizer, and the process group if this backend created it."""
        self.module = None
        self._reference = None
        self.optimizer = None  # type: ignore[assignment]
        self.scheduler = None  # type: ignore[assignment]
        gc.collect()
        if self.ctx.device.type == "cuda":
            torch.cuda.empty_cache()
        self.ctx.close()


def _hf_tensors(model: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """Parameters (each tied tensor once) and persistent buffers, under Hugging Face names."""
    yield from model.named_parameters()
    for name, buffer in model.named_buffers():
        owner, _, leaf = name.rpartition(".")
        if leaf not in model.get_submodule(owner)._non_persistent_buffers_set:
            yield name, buffer


__all__ = ["DTensorBackend", "dcp_to_hf"]
