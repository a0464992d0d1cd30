"""Helpers shared by the engine adapters: engine loading, output assembly, stops, refit checks.

Why here: the SGLang and TensorRT-LLM adapters receive the interface's right-padded prompts and
must return the same columns, all three engine adapters (vLLM too) refit through name/shape-checked
weights, and SGLang/TensorRT-LLM may be handed a stand-in engine (`reinforge.testing.fake_engines`)
on machines without a GPU. Everything below is a pure function of its arguments (or calls only
the callables it is given), so it is unit-tested without any engine. Imports torch only.
"""

from __future__ import annotations

import difflib
import importlib
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch

from reinforge.backends.generation.sampling_utils import carried_columns, check_prompts
from reinforge.core.batch import Batch
from reinforge.core.errors import ReinforgeError
from reinforge.core.sampling import SamplingParams


# ---------------------------------------------------------------------------- engine loading
def load_engine_api(path: str, *, backend: str, extra: str) -> Any:
    """Import `module` or `module:attribute` (the engine package, or a stand-in exposing the same names).

    A missing engine is a user error naming the pip extra, never an ImportError traceback.
    """
    module_name, _, attribute = path.partition(":")
    try:
        api: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ReinforgeError(
            f"the {backend} generation backend needs the '{module_name}' package, which cannot be imported here "
            f"({exc}). Install it on a machine with an NVIDIA GPU: pip install 'reinforge[{extra}]' "
            "(see docs/engines/generation.md), or choose another generation backend (policy.generation.backend: hf or vllm)."
        ) from None
    for part in filter(None, attribute.split(".")):
        if not hasattr(api, part):
            raise ReinforgeError(f"engine_api '{path}': '{module_name}' has no attribute '{attribute}'")
        api = getattr(api, part)
    return api


def check_model_folder(model_name: str) -> None:
    if not Path(model_name).exists() and model_name.startswith(("/", ".", "~")):
        raise ReinforgeError(f"model folder '{model_name}' does not exist; check policy.model_name")


# ---------------------------------------------------------------------------- inputs
def prompt_lists(batch: Batch, sampling: SamplingParams, max_total_sequence_length: int, *, backend: str) -> list[list[int]]:
    """The validated prompts of `batch` as token lists, padding stripped (what the engines take)."""
    input_ids, lengths = check_prompts(batch, sampling, max_total_sequence_length, backend=backend)
    return [input_ids[row, :length].tolist() for row, length in enumerate(lengths.tolist())]


# ---------------------------------------------------------------------------- outputs
@attrs.frozen
class Completion:
    """One sample as an engine returned it: the response tokens, their logprobs and how it ended."""

    response: list[int]
    logprobs: list[float]  # one per response token (0.0 where not requested)
    truncated: bool  # stopped by max_new_tokens, not by eos / stop token / stop string


def cut_at_stop_strings(
    response: list[int], stop_strings: Sequence[str], decode: Callable[[list[int]], str]
) -> int | None:
    """Length of the shortest prefix of `response` whose text contains a stop string, or None.

    Why: the interface stops on text (the stop string is kept, only the response is searched),
    while an engine may match stop strings as token sequences (TensorRT-LLM) or not at all
    without its tokenizer (SGLang with skip_tokenizer_init). Sampling is causal, so cutting a
    longer response at the first match gives exactly what a text-level stop would have given.
    "Contains" only grows with the prefix, so a binary search finds the first match.
    """
    if not stop_strings or not any(s in decode(response) for s in stop_strings):
        return None
    low, high = 1, len(response)  # the answer is in [low, high]
    while low < high:
        middle = (low + high) // 2
        if any(s in decode(response[:middle]) for s in stop_strings):
            high = middle
        else:
            low = middle + 1
    return low


def apply_stop_strings(
    completion: Completion, stop_strings: Sequence[str], decode: Callable[[list[int]], str]
) -> Completion:
    cut = cut_at_stop_strings(completion.response, stop_strings, decode)
    if cut is None:
        return completion
    return Completion(response=completion.response[:cut], logprobs=completion.logprobs[:cut], truncated=False)


def assemble_batch(
    batch: Batch, prompts: list[list[int]], completions: list[Completion], n: int, pad_id: int
) -> Batch:
    """The interface's output columns from `B` prompts and their `B * n` completions (each prompt's samples adjacent)."""
    if len(completions) != len(prompts) * n:
        raise RuntimeError(f"the engine returned {len(completions)} completions for {len(prompts)} prompts x n={n}")
    rows = [prompts[i // n] + c.response for i, c in enumerate(completions)]
    out = Batch.from_sequences(rows, pad_id=pad_id)
    width = out["input_ids"].shape[1]
    logprobs = torch.zeros(len(rows), width)  # [B*n, T]
    for i, c in enumerate(completions):
        start = len(prompts[i // n])
        if len(c.logprobs) != len(c.response):
            raise RuntimeError(f"completion {i}: {len(c.logprobs)} logprobs for {len(c.response)} tokens")
        if c.response:
            logprobs[i, start : start + len(c.response)] = torch.tensor(c.logprobs, dtype=torch.float32)
    result = carried_columns(batch, n)
    result["output_ids"] = out["input_ids"]
    result["sequence_lengths"] = out["input_lengths"]
    result["prompt_lengths"] = torch.tensor([len(prompts[i // n]) for i in range(len(completions))])
    result["generation_lengths"] = torch.tensor([len(c.response) for c in completions])
    result["generation_logprobs"] = logprobs
    result["truncated"] = torch.tensor([c.truncated for c in completions], dtype=torch.bool)
    return result


def sample_seeds(base_seed: int, prompts: int, n: int) -> list[int]:
    """One seed per sample, `base_seed + row`: a prompt's n copies must not draw identical responses."""
    return [base_seed + row for row in range(prompts * n)]


# ---------------------------------------------------------------------------- refit
def plan_buckets(sizes: Sequence[int], bucket_bytes: int) -> list[list[int]]:
    """Group tensor indices, in order, into buckets of at most `bucket_bytes` (a bigger tensor travels alone)."""
    buckets: list[list[int]] = []
    current: list[int] = []
    filled = 0
    for index, size in enumerate(sizes):
        if current and filled + size > bucket_bytes:
            buckets.append(current)
            current, filled = [], 0
        current.append(index)
        filled += size
    if current:
        buckets.append(current)
    return buckets


def send_in_buckets(
    weights: list[tuple[str, torch.Tensor]], bucket_bytes: int,
    send: Callable[[list[tuple[str, torch.Tensor]]], None], finish: Callable[[], None],
) -> RefitRecord:
    """Call `send` once per bucket of at most `bucket_bytes` (in order), then `finish` once; time the whole refit.

    Why one `finish`: engines drop their cached KV / run post-load hooks after the last bucket,
    not after each (an intermediate flush would be wasted work on half-updated weights).
    """
    sizes = [t.numel() * t.element_size() for _, t in weights]
    with RefitTimer() as record:
        for indices in plan_buckets(sizes, bucket_bytes):
            send([weights[i] for i in indices])
            record.buckets += 1
            record.bytes += sum(sizes[i] for i in indices)
        finish()
    return record


def checkpoint_shapes(model_dir: str) -> dict[str, tuple[int, ...]] | None:
    """Hugging Face parameter names and shapes of a local safetensors checkpoint (None for hub names)."""
    from safetensors import safe_open

    files = sorted(Path(model_dir).glob("*.safetensors")) if Path(model_dir).is_dir() else []
    if not files:
        return None
    shapes: dict[str, tuple[int, ...]] = {}
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            for name in handle.keys():
                shapes[name] = tuple(handle.get_slice(name).get_shape())
    if "lm_head.weight" not in shapes and "model.embed_tokens.weight" in shapes:  # tied embeddings
        shapes["lm_head.weight"] = shapes["model.embed_tokens.weight"]
    return shapes


def check_weights(
    weights: Iterable[tuple[str, torch.Tensor]], shapes: dict[str, tuple[int, ...]] | None, *, backend: str
) -> None:
    """Reject a refit before anything is sent: an engine that fails mid-way is left with half-replaced weights."""
    if shapes is None:
        return
    problems = []
    for name, tensor in weights:
        if name not in shapes:
            close = difflib.get_close_matches(name, list(shapes), n=1)
            problems.append(f"unknown weight '{name}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
        elif tuple(tensor.shape) != shapes[name]:
            problems.append(f"'{name}' has shape {tuple(tensor.shape)}, the model expects {shapes[name]}")
    if problems:
        raise ReinforgeError(
            f"cannot load these weights into the {backend} engine: " + "; ".join(problems)
            + ". Refit sends Hugging Face parameter names of the policy's own architecture."
        )


# vLLM loads these Hugging Face projections into one fused module each (Llama, Qwen2/3, Mistral, ...).
FUSED_PROJECTIONS = {"q_proj": "qkv_proj", "k_proj": "qkv_proj", "v_proj": "qkv_proj", "gate_proj": "gate_up_proj", "up_proj": "gate_up_proj"}


def engine_module(name: str) -> str:
    """The engine module a Hugging Face tensor loads into: `model.layers.3.self_attn.k_proj.bias` -> `...self_attn.qkv_proj`."""
    module = name.rpartition(".")[0]
    parent, _, leaf = module.rpartition(".")
    return f"{parent}.{FUSED_PROJECTIONS[leaf]}" if leaf in FUSED_PROJECTIONS else module


class WholeModules:
    """Holds back a module's tensors until all of them have arrived, then releases them together.

    Why: vLLM reloads weights layer by layer and materialises a layer once its load ends; a layer that
    got only part of its tensors in one `reload_weights` call (q_proj in one refit bucket, v_proj or a
    bias in the next) is rebuilt with the missing part uninitialised, and generates garbage. Buckets
    cut by size split such modules (SmolLM2-135M in float32 is three 256 MiB buckets).
    `expected`: every tensor name the engine's checkpoint has (None: unknown, so nothing is held).
    """

    def __init__(self, expected: Iterable[str] | None) -> None:
        self.members: dict[str, frozenset[str]] = {}
        if expected is not None:
            groups: dict[str, set[str]] = {}
            for name in expected:
                groups.setdefault(engine_module(name), set()).add(name)
            self.members = {module: frozenset(names) for module, names in groups.items() if len(names) > 1}
        self.pending: dict[str, dict[str, torch.Tensor]] = {}

    def release(self, weights: Iterable[tuple[str, torch.Tensor]]) -> list[tuple[str, torch.Tensor]]:
        """The tensors whose modules are now complete (held ones included); the rest wait for a later call."""
        ready = []
        for name, tensor in weights:
            module = engine_module(name)
            members = self.members.get(module)
            if members is None or name not in members:
                ready.append((name, tensor))
                continue
            held = self.pending.setdefault(module, {})
            held[name] = tensor
            if held.keys() >= members:
                ready.extend(self.pending.pop(module).items())
        return ready

    def missing(self) -> list[str]:
        """Names still awaited by a module that got part of its tensors."""
        return sorted(n for module, held in self.pending.items() for n in self.members[module] - held.keys())


@attrs.define
class RefitRecord:
    """What the last `update_weights` call sent: buckets, bytes and wall seconds (engine calls included)."""

    buckets: int = 0
    bytes: int = 0
    seconds: float = 0.0

    @property
    def gb_per_s(self) -> float:
        return self.bytes / 1e9 / self.seconds if self.seconds > 0 else 0.0


class RefitTimer:
    """`with RefitTimer() as record:` fills a RefitRecord's seconds on exit."""

    def __init__(self) -> None:
        self.record = RefitRecord()
        self._start = 0.0

    def __enter__(self) -> RefitRecord:
        self._start = time.perf_counter()
        return self.record

    def __exit__(self, *exc: object) -> None:
        self.record.seconds = time.perf_counter() - self._start


def eos_token_ids(model_dir: str, tokenizer: Any) -> list[int]:
    """Every id that ends a response: the tokenizer's eos and those of config.json / generation_config.json."""
    import json

    ids: list[int] = []
    for value in [getattr(tokenizer, "eos_token_id", None)] + [
        json.loads((Path(model_dir) / name).read_text()).get("eos_token_id")
        for name in ("config.json", "generation_config.json")
        if (Path(model_dir) / name).is_file()
    ]:
        if isinstance(value, int):
            ids.append(value)
        elif isinstance(value, list):
            ids.extend(int(v) for v in value)
    return sorted(set(ids))
