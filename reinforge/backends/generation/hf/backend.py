"""`HFGenerationBackend`: rollouts with Hugging Face `generate()` and the KV cache, in this process.

Why it exists: it is the generation backend that needs nothing beyond torch and transformers,
so GRPO runs for real on a laptop CPU and in tests, and it is the reference the faster engines
(vLLM, SGLang, TensorRT-LLM) are checked against with the same conformance suite.

What it does around `model.generate`: converts the interface's right-padded prompts to the left
padding decoder-only generation needs (and back), expands each prompt into `n` adjacent rows,
splits rows into calls bounded by `max_batch_size` rows and `max_batch_tokens` KV positions, hands
each call a KV cache that reserves its full length once (`kv_cache.py`: no per-step copy of the
cache), draws sampled tokens itself from a seeded generator of the call (`sampler.py`: faster than
transformers' multinomial on the CPU, and the caller's global RNG is never touched), and records
the sampled tokens' logprobs and each row's stop step with two small hooks (`recorders.py`) instead
of keeping every step's logits or running a second forward pass.
"""

from __future__ import annotations

import difflib
import gc
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    LogitsProcessorList,
    StoppingCriteriaList,
    StopStringCriteria,
)

from reinforge.backends.generation.hf.config import HFGenerationConfig
from reinforge.backends.generation.hf.kv_cache import ReservedKVLayer, reserved_kv_cache
from reinforge.backends.generation.hf.recorders import SampledTokenLogprobs, StopRecorder
from reinforge.backends.generation.hf.sampler import TokenSampler
from reinforge.backends.generation.sampling_utils import (
    carried_columns,
    check_prompts,
    left_to_right_padded,
    to_left_padded,
)
from reinforge.backends.kit import cache_keyword, own_weights
from reinforge.core.batch import Batch
from reinforge.core.errors import ReinforgeError
from reinforge.core.model_folder import refused_weights

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from reinforge.core.interfaces import NamedTensors
    from reinforge.core.model_config import ModelConfig
    from reinforge.core.run_config import GenerationConfig as RunGenerationConfig
    from reinforge.core.sampling import SamplingParams

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
_WEIGHT_FILES = ("*.safetensors", "pytorch_model*.bin", "*.safetensors.index.json", "pytorch_model.bin.index.json")


class HFGenerationBackend:
    """The `hf` generation backend (see the module docstring); implements `GenerationBackend`."""

    def __init__(self, model_config: ModelConfig, options: HFGenerationConfig | None = None, *, generation: RunGenerationConfig | None = None, seed: int = 0) -> None:
        self.model_config = model_config
        self.sampling_defaults = generation  # the run's sampling defaults; each call brings its own SamplingParams
        self.options = options or HFGenerationConfig()
        self.device = _pick_device(self.options.device)
        self.asleep = False
        # Seeds for calls whose SamplingParams.seed is None: reproducible per run seed, different per call.
        self._seed_stream = torch.Generator().manual_seed(seed)
        self._stop_string_criteria: dict[tuple[str, ...], StopStringCriteria] = {}
        self._model: PreTrainedModel | None = _load_model(model_config, self.options)
        self.tokenizer: PreTrainedTokenizerBase = _load_tokenizer(model_config.tokenizer_name or model_config.model_name)
        self._model.to(self.device)
        own_weights(self._model)  # on the CPU: out of the checkpoint's mmap, so the first refit is not 30x slower
        self.eos_token_ids = _eos_token_ids(self._model, self.tokenizer)
        self.pad_token_id = _pad_token_id(self._model, self.tokenizer, self.eos_token_ids)
        # Nothing from the checkpoint's generation_config.json but its eos ids (read above) may leak into sampling
        # (Qwen ships top_k=20, repetition_penalty=1.05, ...): every call passes a config built from SamplingParams.
        self._model.generation_config = GenerationConfig(eos_token_id=self.eos_token_ids, pad_token_id=self.pad_token_id)

    @property
    def model(self) -> PreTrainedModel:
        """The live transformers model (for inspection; refit through `update_weights`)."""
        return self._live_model()

    # ------------------------------------------------------------------ GenerationBackend
    def generate(self, batch: Batch, sampling: SamplingParams) -> Batch:
        """See `GenerationBackend.generate`. Output tensors are on the CPU.

        Rows (prompts x n) go through `model.generate` in chunks of at most `options.max_batch_size`
        rows and `options.max_batch_tokens` reserved positions (`_rows_per_call`), one seeded RNG
        stream across the chunks: greedy outputs do not depend on the chunk size, sampled ones do (as
        they would on any engine that batches differently). The chunk size depends only on the
        options and the batch's shape, never on the machine, so a seeded run repeats exactly.
        """
        model = self._awake_model()
        prompts, lengths = check_prompts(batch, sampling, self.model_config.max_total_sequence_length, backend="hf")
        n = sampling.n
        prompts, lengths = prompts.repeat_interleave(n, dim=0), lengths.repeat_interleave(n)  # [R, P], [R]
        rows, width = prompts.shape[0], int(lengths.max()) + sampling.max_new_tokens
        output_ids = torch.full((rows, width), self.pad_token_id, dtype=torch.long)  # [R, width]
        logprobs = torch.zeros(rows, width, dtype=torch.float32)  # [R, width]
        generation_lengths = torch.zeros(rows, dtype=torch.long)  # [R]
        truncated = torch.zeros(rows, dtype=torch.bool)  # [R]
        config = self._generation_config(sampling)
        sampler = None if sampling.greedy else self._sampler(sampling)
        step = _rows_per_call(rows, width, self.options)
        source = torch.arange(rows) // n  # [R] the prompt each row samples from
        with torch.inference_mode():
            for start in range(0, rows, step):
                chunk = slice(start, min(start + step, rows))
                ids, lps, gen, trunc = self._generate_chunk(
                    model, prompts[chunk], lengths[chunk], sampling, config, source[chunk], sampler
                )
                output_ids[chunk, : ids.shape[1]] = ids
                logprobs[chunk, : lps.shape[1]] = lps
                generation_lengths[chunk], truncated[chunk] = gen, trunc
        sequence_lengths = lengths + generation_lengths  # [R]
        used = int(sequence_lengths.max())
        out = carried_columns(batch, n)
        out["output_ids"] = output_ids[:, :used]
        out["prompt_lengths"] = lengths
        out["generation_lengths"] = generation_lengths
        out["sequence_lengths"] = sequence_lengths
        out["generation_logprobs"] = logprobs[:, :used]
        out["truncated"] = truncated
        return out

    def update_weights(self, named_tensors: NamedTensors) -> None:
        """Copy Hugging Face-named tensors into the live parameters in place; call once per bucket.

        Each call is checked as a whole before anything is copied, so a bad bucket leaves the model
        as it was. Tied weights (`lm_head.weight` sharing `model.embed_tokens.weight`) are one
        tensor reachable under both names, so either name updates both. Works while asleep.
        """
        model = self._live_model()
        targets = dict(model.named_parameters(remove_duplicate=False))
        targets.update((name, buf) for name, buf in model.named_buffers(remove_duplicate=False) if _persistent(model, name))
        pairs = list(named_tensors)
        unknown = [name for name, _ in pairs if name not in targets]
        if unknown:
            known = ", ".join(list(targets)[:3])
            close = difflib.get_close_matches(unknown[0], targets, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ReinforgeError(
                f"update_weights got {len(unknown)} tensor name(s) the generation model does not have: "
                f"{', '.join(unknown[:10])}{' ...' if len(unknown) > 10 else ''}{hint}. Names must be the Hugging Face "
                f"names of {type(model).__name__} (e.g. {known}); check that trainer and generator load the same "
                "architecture and that the training backend strips wrapper prefixes (FSDP, torch.compile)."
            )
        mismatched = [
            f"{name} {list(tensor.shape)} (model: {list(targets[name].shape)})"
            for name, tensor in pairs
            if tuple(tensor.shape) != tuple(targets[name].shape)
        ]
        if mismatched:
            raise ReinforgeError(
                f"update_weights got tensors whose shapes differ from the generation model's: {'; '.join(mismatched[:5])}. "
                "Send full (unsharded) tensors of the same architecture, e.g. gathered DTensors."
            )
        with torch.no_grad():
            for name, tensor in pairs:
                targets[name].data.copy_(tensor)

    def sleep(self) -> None:
        """Move the weights to CPU and free the CUDA cache; on CPU only the state is recorded."""
        model = self._live_model()
        if self.device.type != "cpu" and not self.asleep:
            model.to("cpu")
            gc.collect()
            torch.cuda.empty_cache()
        self.asleep = True

    def wake(self) -> None:
        """Move the weights back to the backend's device."""
        model = self._live_model()
        if self.device.type != "cpu" and self.asleep:
            model.to(self.device)
        self.asleep = False

    def shutdown(self) -> None:
        """Drop the model (and its device memory); the backend is unusable afterwards."""
        self._model = None
        self._stop_string_criteria.clear()
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    # ------------------------------------------------------------------ generation
    def _generate_chunk(
        self,
        model: PreTrainedModel,
        prompts: torch.Tensor,  # [b, P] right-padded
        lengths: torch.Tensor,  # [b]
        sampling: SamplingParams,
        config: GenerationConfig,
        source: torch.Tensor,  # [b] prompt index of each row (equal for the n samples of a prompt)
        sampler: TokenSampler | None,  # None: greedy
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One `generate` call; returns right-padded ids and logprobs `[b, <=P+G]`, generation lengths, truncated."""
        left, mask = to_left_padded(prompts, lengths, self.pad_token_id)  # [b, W], [b, W]
        width = left.shape[1]
        # None: generate builds transformers' own DynamicCache
        cache = reserved_kv_cache(model, width + sampling.max_new_tokens) if self.options.reserve_kv_cache else None
        if self.options.share_prompt_prefill and width > 1 and bool((source[1:] == source[:-1]).any()):
            cache = _shared_prefill(model, left.to(self.device), mask.to(self.device), source, cache)
        extra: dict[str, Any] = {} if cache is None else {cache_keyword(model): cache}
        stop_ids = torch.tensor(sorted({*self.eos_token_ids, *sampling.stop_token_ids}), device=self.device)
        stops = StopRecorder(width, left.shape[0], stop_ids, self._stop_strings(sampling.stop_strings), self.tokenizer)
        recorder = SampledTokenLogprobs(sampling.temperature or 1.0) if sampling.logprobs else None
        processors = [p for p in (recorder, sampler) if p is not None]  # the recorder reads the raw logits first
        sequences = model.generate(
            input_ids=left.to(self.device),
            attention_mask=mask.to(self.device),
            generation_config=config,
            logits_processor=LogitsProcessorList(processors),
            stopping_criteria=StoppingCriteriaList([stops]),
            **extra,
        )  # [b, W + G]
        generated = sequences.shape[1] - width
        stopped_at = stops.stopped_at  # [b], 0 = never stopped
        truncated = stopped_at == 0
        gen_lengths = torch.where(truncated, generated, stopped_at)  # [b]
        shift = (width - lengths).to(self.device)  # [b] left pad per row
        totals = lengths.to(self.device) + gen_lengths  # [b]
        used = int(totals.max())
        ids = left_to_right_padded(sequences, shift, totals, used, self.pad_token_id)  # [b, used]
        if recorder is not None:
            lps = torch.cat([torch.zeros(left.shape, device=self.device), recorder.result(sequences, generated)], dim=1)
            lps = left_to_right_padded(lps, shift, totals, used, 0.0)  # [b, used], 0 on prompt and padding
        else:
            lps = torch.zeros(ids.shape)
        return ids.cpu(), lps.float().cpu(), gen_lengths.cpu(), truncated.cpu()

    def _generation_config(self, sampling: SamplingParams) -> GenerationConfig:
        """A complete config for generate's greedy path; sampled calls draw their tokens in `TokenSampler`."""
        return GenerationConfig(
            do_sample=False,
            max_new_tokens=sampling.max_new_tokens,
            eos_token_id=self.eos_token_ids,
            pad_token_id=self.pad_token_id,
            num_beams=1,
            use_cache=True,
            repetition_penalty=1.0,
        )

    def _stop_strings(self, strings: tuple[str, ...]) -> StopStringCriteria | None:
        """transformers' StopStringCriteria for `strings`, built once (it precomputes tables over the vocabulary)."""
        if not strings:
            return None
        if strings not in self._stop_string_criteria:
            self._stop_string_criteria[strings] = StopStringCriteria(tokenizer=self.tokenizer, stop_strings=list(strings))
        return self._stop_string_criteria[strings]

    def _sampler(self, sampling: SamplingParams) -> TokenSampler:
        """The call's sampler, on its own seeded generator (torch's global RNG is never touched)."""
        seed = sampling.seed
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,), generator=self._seed_stream))
        generator = torch.Generator(device=self.device).manual_seed(seed)
        return TokenSampler(sampling.temperature, sampling.top_k, sampling.top_p, generator)

    # ------------------------------------------------------------------ state
    def _live_model(self) -> PreTrainedModel:
        if self._model is None:
            raise ReinforgeError("the hf generation backend was shut down; build a new one to generate again.")
        return self._model

    def _awake_model(self) -> PreTrainedModel:
        model = self._live_model()
        if self.asleep:
            raise ReinforgeError(
                "the hf generation backend is asleep (its weights are off the device); call wake() before generate()."
            )
        return model


def _rows_per_call(rows: int, width: int, options: HFGenerationConfig) -> int:
    """Rows per `generate` call: all `rows`, capped by `max_batch_size` and by `max_batch_tokens // width`.

    `width` is the longest prompt plus max_new_tokens, the positions every row of a call reserves in
    the KV cache (the shorter prompts are left-padded to the longest). At least one row per call.
    """
    step = min(rows, options.max_batch_size or rows)
    if options.max_batch_tokens is not None:
        step = min(step, max(1, options.max_batch_tokens // width))
    return max(1, step)


def _shared_prefill(
    model: PreTrainedModel,
    left: torch.Tensor,  # [b, W] left-padded prompts, the n copies of a prompt adjacent
    mask: torch.Tensor,  # [b, W]
    source: torch.Tensor,  # [b] prompt index per row
    cache: Any | None,  # an empty cache to fill (the reserved one), or None for a DynamicCache
) -> Any:  # the cache, over the first W-1 positions of all b rows
    """Prefill every distinct prompt once (all but its last token) and expand the KV cache to its rows.

    `generate` then sees a cache covering W-1 positions and computes only the last prompt token
    before sampling, with the same position ids it would give the full prompt (from the mask).
    The prefill fills a plain DynamicCache of U rows; a reserved cache then takes the b expanded
    rows into its reservation (a reserved prefill would reserve U rows only to drop them).
    """
    from transformers import DynamicCache

    prefilled = DynamicCache(config=model.config)
    _, group, counts = torch.unique_consecutive(source, return_inverse=True, return_counts=True)
    starts = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)[:-1]])  # [U] first row of each prompt
    unique_ids, unique_mask = left[starts.to(left.device), :-1], mask[starts.to(left.device), :-1]  # [U, W-1]
    positions = (unique_mask.long().cumsum(-1) - 1).clamp(min=0)  # [U, W-1]: as generate derives them
    model(input_ids=unique_ids, attention_mask=unique_mask, position_ids=positions, use_cache=True,
          **{cache_keyword(model): prefilled})  # fmt: skip
    prefilled.batch_select_indices(group.to(left.device))  # [b, heads, W-1, d]: row i gets its prompt's cache
    if cache is None:
        return prefilled
    for index, layer in enumerate(prefilled.layers):
        if isinstance(cache.layers[index], ReservedKVLayer):
            cache.layers[index].update(layer.keys, layer.values)  # reserves b rows, holds the W-1 positions
        else:
            cache.layers[index] = layer  # sliding-window and other layers stay transformers' own, as prefilled
    return cache


# ---------------------------------------------------------------------- loading
def _pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ReinforgeError(
            "generation backend option device='cuda' but torch sees no CUDA device; use device='cpu' or 'auto', "
            "or install a CUDA build of torch on a machine with a GPU."
        )
    return torch.device(name)


def _local_or_hub(name: str, what: str) -> Path | None:
    """The local folder `name` names, None for a hub id; a path that does not exist raises."""
    path = Path(name).expanduser()
    if path.exists():
        return path
    if path.is_absolute() or name.startswith((".", "~")) or name.count("/") > 1:  # hub ids: "name" or "org/name"
        raise ReinforgeError(
            f"{what} folder {name!r} does not exist. Point policy.model_name (or policy.tokenizer_name) at a Hugging "
            "Face folder with config.json and the weights, e.g. one written by `reinforge convert` or by "
            "reinforge.testing.build_model()."
        )
    return None


def _load_model(model_config: ModelConfig, options: HFGenerationConfig) -> PreTrainedModel:
    name = model_config.model_name
    folder = _local_or_hub(name, "model")
    if folder is not None:
        if not folder.is_dir() or not (folder / "config.json").is_file():
            problem = "is a file, not a folder" if not folder.is_dir() else "has no config.json"
            raise ReinforgeError(
                f"model path {name!r} {problem}; point policy.model_name at the Hugging Face folder that holds "
                "config.json and the weights."
            )
        if not any(any(folder.glob(pattern)) for pattern in _WEIGHT_FILES):
            raise ReinforgeError(
                f"model folder {name!r} has a config.json but no weights (*.safetensors or pytorch_model*.bin). "
                "Finish the export (`reinforge convert`, or the training backend's export_hf) or point "
                "policy.model_name at the complete folder."
            )
    try:
        return AutoModelForCausalLM.from_pretrained(
            name, dtype=_DTYPES[model_config.precision], attn_implementation=options.attn_implementation
        ).eval()
    except pickle.UnpicklingError as exc:  # a pytorch_model.bin holding more than tensors
        raise refused_weights(name, exc, setting="the generator's model_name") from None
    except OSError as exc:
        raise ReinforgeError(
            f"could not load model {name!r} with transformers: {str(exc).rstrip('.')}. Nothing is downloaded when HF_HUB_OFFLINE=1; "
            "download it first (huggingface-cli download) or point policy.model_name at a local folder."
        ) from exc


def _load_tokenizer(name: str) -> PreTrainedTokenizerBase:
    _local_or_hub(name, "tokenizer")
    try:
        return AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as exc:
        raise ReinforgeError(
            f"could not load the tokenizer from {name!r}: {str(exc).rstrip('.')}. The hf generation backend needs it for the pad and "
            "eos ids and for stop strings; point policy.tokenizer_name (or policy.model_name) at a folder with "
            "tokenizer files."
        ) from exc


def _as_ids(value: Any) -> list[int]:
    if value is None:
        return []
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)]


def _eos_token_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Every id that ends a response: the tokenizer's eos and those of the model's config and generation config.

    Instruct checkpoints often list several (Qwen2.5: <|im_end|> and <|endoftext|>) in generation_config.json.
    """
    ids = _as_ids(tokenizer.eos_token_id) + _as_ids(getattr(model.config, "eos_token_id", None))
    if model.generation_config is not None:
        ids += _as_ids(model.generation_config.eos_token_id)
    return sorted(set(ids))


def _pad_token_id(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, eos: list[int]) -> int:
    for candidate in (tokenizer.pad_token_id, getattr(model.config, "pad_token_id", None)):
        if candidate is not None:
            return int(candidate)
    if eos:
        return eos[0]
    raise ReinforgeError(
        f"the tokenizer of {model.name_or_path!r} defines neither a pad nor an eos token; set pad_token in its "
        "tokenizer_config.json."
    )


def _persistent(model: torch.nn.Module, name: str) -> bool:
    """Whether buffer `name` is saved in checkpoints (rotary caches and the like are not, and are never refitted)."""
    module_name, _, buffer_name = name.rpartition(".")
    module = model.get_submodule(module_name) if module_name else model
    return buffer_name not in module._non_persistent_buffers_set
