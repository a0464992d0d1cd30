"""CPU stand-ins for two GPU-only engines: a fake SGLang `Engine` and a fake TensorRT-LLM `LLM`.

THESE ARE FAKES, NOT THE ENGINES. SGLang and TensorRT-LLM need an NVIDIA GPU, so on a CPU
machine the `sglang` and `trtllm` backends can only be tested against objects that have the
engines' method names, signatures and return shapes (as read from their source:
sglang/srt/entrypoints/engine.py, tensorrt_llm/llmapi/llm.py, sampling_params.py,
llmapi/rlhf_utils.py). The tokens and logprobs are real: each fake runs a Hugging Face model
(the kit's tiny Qwen2, say) one request at a time with its own KV cache and seeded sampler,
following the engine's documented semantics (SGLang: logprobs after temperature, before
top-k/top-p; greedy as top_k=1 at temperature 1; text stop strings that need the tokenizer.
TensorRT-LLM: "processed" logprobs after temperature and top-k/top-p; stop strings matched as
token sequences; one end_id). Every call is recorded in `calls` as (method, summary) so
tests can assert what a backend sent. What the fakes cannot show: kernels, CUDA graphs, IPC,
memory savings, engine-side batching, or whether the real engines still accept these calls.

Plug them in through a backend's `engine_api` option: `reinforge.testing.fake_engines:SGLANG_API`
or `reinforge.testing.fake_engines:TRTLLM_API`.
"""

from __future__ import annotations

import dataclasses
import enum
import types
from collections.abc import Callable, Sequence
from typing import Any

import torch

TOP_K_ALL = 1 << 30  # SGLang's "whole vocabulary"


# ---------------------------------------------------------------------------- shared sampler
class _HFModelRunner:
    """A Hugging Face causal LM that samples one request at a time, recording each sampled token's logprob."""

    def __init__(self, model_path: str, tokenizer_path: str | None, dtype: str) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}.get(dtype, torch.float32)
        self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch_dtype).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_path or model_path)
        eos = [self.tokenizer.eos_token_id, self.model.config.eos_token_id]
        if self.model.generation_config is not None:
            eos.append(self.model.generation_config.eos_token_id)
        self.eos_ids = sorted({int(e) for item in eos if item is not None for e in (item if isinstance(item, list) else [item])})
        self._backup: dict[str, torch.Tensor] | None = None

    @torch.no_grad()
    def sample(
        self,
        prompt: list[int],
        *,
        max_new_tokens: int,
        temperature: float,
        top_p: float,
        top_k: int | None,
        seed: int,
        end_ids: set[int],
        stop: Callable[[list[int]], Any],
        processed_logprobs: bool,
    ) -> tuple[list[int], list[float], str, Any]:
        """(response, logprobs, "stop" | "length", what matched) for one request."""
        generator = torch.Generator().manual_seed(seed)
        greedy = temperature == 0 or top_k == 1
        scale = 1.0 if temperature == 0 else float(temperature)
        response: list[int] = []
        logprobs: list[float] = []
        past, feed = None, prompt
        for _ in range(max_new_tokens):
            out = self.model(input_ids=torch.tensor([feed]), past_key_values=past, use_cache=True)
            past = out.past_key_values
            logits = out.logits[0, -1].float() / scale  # [V]
            filtered = _filter(logits, top_k, top_p)  # [V], -inf outside the kept set
            if greedy:
                token = int(logits.argmax())
            else:
                token = int(torch.multinomial(torch.softmax(filtered, -1), 1, generator=generator))
            source = filtered if processed_logprobs and not greedy else logits
            response.append(token)
            logprobs.append(float(torch.log_softmax(source, -1)[token]))
            feed = [token]
            if token in end_ids:
                return response, logprobs, "stop", token
            matched = stop(response)
            if matched is not None:
                return response, logprobs, "stop", matched
        return response, logprobs, "length", None

    def load(self, named: Sequence[tuple[str, torch.Tensor]]) -> list[str]:
        """Copy tensors into the parameters by Hugging Face name; returns the unknown names (nothing is loaded then)."""
        params = dict(self.model.named_parameters())
        if "lm_head.weight" not in params and self.model.config.tie_word_embeddings:
            params["lm_head.weight"] = self.model.get_input_embeddings().weight
        unknown = [name for name, _ in named if name not in params]
        if not unknown:
            with torch.no_grad():
                for name, tensor in named:
                    params[name].copy_(tensor.to(params[name].dtype))
        return unknown

    def release(self, keep_copy: bool) -> None:
        """Drop the weights' contents (zeros stand for freed GPU memory), keeping a host copy if asked."""
        self._backup = {k: v.detach().clone() for k, v in self.model.state_dict().items()} if keep_copy else None
        with torch.no_grad():
            for param in self.model.parameters():
                param.zero_()

    def resume(self) -> None:
        if self._backup is not None:
            self.model.load_state_dict(self._backup)
            self._backup = None


def _filter(logits: torch.Tensor, top_k: int | None, top_p: float) -> torch.Tensor:
    out = logits.clone()
    if top_k is not None and 0 < top_k < out.numel():
        kth = torch.topk(out, top_k).values[-1]
        out[out < kth] = float("-inf")
    if top_p < 1:
        ordered, order = torch.sort(out, descending=True)
        mass_before = torch.cumsum(torch.softmax(ordered, -1), -1) - torch.softmax(ordered, -1)
        out[order[mass_before >= top_p]] = float("-inf")
    return out


def _summary(tensors: Sequence[tuple[str, torch.Tensor]]) -> dict[str, Any]:
    return {"names": [n for n, _ in tensors], "bytes": sum(t.numel() * t.element_size() for _, t in tensors)}


# ---------------------------------------------------------------------------- SGLang
_SGLANG_SERVER_ARGS = frozenset({
    "model_path", "tokenizer_path", "dtype", "context_length", "mem_fraction_static", "tp_size", "random_seed",
    "skip_tokenizer_init", "disable_radix_cache", "disable_cuda_graph", "enable_memory_saver",
    "enable_weights_cpu_backup", "enable_deterministic_inference", "log_level", "attention_backend",
    "trust_remote_code", "load_format", "base_gpu_id", "port", "nnodes", "node_rank",
})
_SGLANG_SAMPLING_KEYS = frozenset({
    "max_new_tokens", "stop", "stop_token_ids", "temperature", "top_p", "top_k", "min_p", "frequency_penalty",
    "presence_penalty", "repetition_penalty", "min_new_tokens", "n", "ignore_eos", "skip_special_tokens",
    "spaces_between_special_tokens", "no_stop_trim", "sampling_seed", "custom_params", "logit_bias",
})


class FakeSglangEngine:
    """A stand-in for `sglang.Engine` (GPU-only) with the methods the `sglang` backend calls. See the module docstring."""

    def __init__(self, **kwargs: Any) -> None:
        unknown = sorted(set(kwargs) - _SGLANG_SERVER_ARGS)
        if unknown:  # ServerArgs is a dataclass: unknown names are a TypeError there too
            raise TypeError(f"ServerArgs.__init__() got unexpected keyword arguments {unknown}")
        self.server_args = dict(kwargs)
        self.calls: list[tuple[str, dict[str, Any]]] = [("__init__", dict(kwargs))]
        self._runner = _HFModelRunner(kwargs["model_path"], kwargs.get("tokenizer_path"), kwargs.get("dtype", "auto"))
        self._seed = int(kwargs.get("random_seed", 0))
        self._requests = 0
        self._released = False

    def generate(
        self,
        prompt: list[str] | str | None = None,
        sampling_params: list[dict] | dict | None = None,
        input_ids: list[list[int]] | list[int] | None = None,
        return_logprob: list[bool] | bool | None = False,
        logprob_start_len: list[int] | int | None = None,
        top_logprobs_num: list[int] | int | None = None,
        stream: bool = False,
        **kwargs: Any,
    ) -> dict | list[dict]:
        if prompt is not None or input_ids is None:
            raise NotImplementedError("the fake engine takes input_ids only")
        if self._released:
            raise RuntimeError("generate() after release_memory_occupation(): the weights and KV cache are gone")
        single = bool(input_ids) and isinstance(input_ids[0], int)
        batch = [input_ids] if single else list(input_ids)
        params = sampling_params if isinstance(sampling_params, list) else [sampling_params or {}] * len(batch)
        self.calls.append(("generate", {"requests": len(batch), "sampling_params": [dict(p) for p in params], "return_logprob": return_logprob}))
        outputs = []
        for ids, p in zip(batch, params, strict=True):
            for key in p:
                if key not in _SGLANG_SAMPLING_KEYS:
                    raise TypeError(f"SamplingParams.__init__() got an unexpected keyword argument '{key}'")
            for _ in range(int(p.get("n", 1))):
                outputs.append(self._one(list(ids), p, bool(return_logprob)))
        return outputs[0] if single and len(outputs) == 1 else outputs

    def _one(self, ids: list[int], p: dict[str, Any], return_logprob: bool) -> dict[str, Any]:
        stops = p.get("stop") or []
        stops = [stops] if isinstance(stops, str) else list(stops)
        tokenizer = None if self.server_args.get("skip_tokenizer_init") else self._runner.tokenizer
        if stops and tokenizer is None:
            raise ValueError(f"stop={stops!r} is unavailable when skip_tokenizer_init=True")
        max_new = int(p.get("max_new_tokens", 128))
        limit = self.server_args.get("context_length")
        if limit is not None and len(ids) + max_new > limit:
            raise ValueError(f"prompt ({len(ids)}) + max_new_tokens ({max_new}) exceeds context_length ({limit})")
        temperature = float(p.get("temperature", 1.0))
        top_k = int(p.get("top_k", TOP_K_ALL))
        if 0 <= temperature < 1e-6:  # SGLang's greedy: top_k=1 at temperature 1
            temperature, top_k = 1.0, 1
        seed = p.get("sampling_seed")
        if seed is None:
            seed = self._seed + self._requests
        self._requests += 1
        end_ids = set() if p.get("ignore_eos") else set(self._runner.eos_ids)
        end_ids |= set(p.get("stop_token_ids") or ())

        def stop_text(response: list[int]) -> str | None:
            if tokenizer is None:
                return None
            text = tokenizer.decode(response)
            return next((s for s in stops if s in text), None)

        response, logprobs, kind, matched = self._runner.sample(
            ids, max_new_tokens=max_new, temperature=temperature, top_p=float(p.get("top_p", 1.0)),
            top_k=None if top_k in (-1, TOP_K_ALL) else top_k, seed=int(seed), end_ids=end_ids, stop=stop_text,
            processed_logprobs=False,
        )
        reason = {"type": "length", "length": len(response)} if kind == "length" else {"type": "stop", "matched": matched}
        meta: dict[str, Any] = {
            "id": f"fake-{self._requests}", "prompt_tokens": len(ids), "completion_tokens": len(response),
            "finish_reason": reason,
        }
        if return_logprob:
            meta["output_token_logprobs"] = [(lp, tok, None) for lp, tok in zip(logprobs, response, strict=True)]
        out: dict[str, Any] = {"output_ids": response, "meta_info": meta}
        if tokenizer is not None:
            out["text"] = tokenizer.decode(response)
        return out

    def update_weights_from_tensor(
        self, named_tensors: list[tuple[str, torch.Tensor]], load_format: str | None = None, flush_cache: bool = True
    ) -> tuple[bool, str]:
        self.calls.append(("update_weights_from_tensor", {**_summary(named_tensors), "flush_cache": flush_cache}))
        unknown = self._runner.load(named_tensors)
        if unknown:
            return False, f"unknown parameters: {unknown}"
        return True, "Succeeded to update model weights."

    def init_weights_update_group(self, master_address: str, master_port: int, rank_offset: int, world_size: int, group_name: str, backend: str = "nccl") -> tuple[bool, str]:
        self.calls.append(("init_weights_update_group", {"world_size": world_size, "group_name": group_name, "backend": backend}))
        return True, "recorded only: the fake has no NCCL group"

    def update_weights_from_distributed(self, names: list[str], dtypes: list[str], shapes: list[list[int]], group_name: str = "weight_update_group", flush_cache: bool = True, load_format: str | None = None) -> tuple[bool, str]:
        self.calls.append(("update_weights_from_distributed", {"names": list(names), "dtypes": list(dtypes), "shapes": list(shapes)}))
        return True, "recorded only: the fake receives no broadcast"

    def flush_cache(self) -> None:
        self.calls.append(("flush_cache", {}))

    def release_memory_occupation(self, tags: list[str] | None = None) -> None:
        self.calls.append(("release_memory_occupation", {"tags": tags}))
        self._runner.release(keep_copy=bool(self.server_args.get("enable_weights_cpu_backup")))
        self._released = True

    def resume_memory_occupation(self, tags: list[str] | None = None) -> None:
        self.calls.append(("resume_memory_occupation", {"tags": tags}))
        self._runner.resume()
        self._released = False

    def shutdown(self) -> None:
        self.calls.append(("shutdown", {}))


SGLANG_API = types.SimpleNamespace(Engine=FakeSglangEngine)


# ---------------------------------------------------------------------------- TensorRT-LLM
class ExecutorMemoryType(str, enum.Enum):
    """Stand-in for TensorRT-LLM's memory tags (the real enum has more members)."""

    MODEL_WEIGHTS_MAIN = "model_weights_main"
    KV_CACHE = "kv_cache"


@dataclasses.dataclass(kw_only=True)
class FakeTrtllmSamplingParams:
    """The fields of `tensorrt_llm.SamplingParams` the `trtllm` backend sets (same names and meanings)."""

    end_id: int | None = None
    pad_id: int | None = None
    max_tokens: int = 32
    stop: str | list[str] | None = None
    stop_token_ids: list[int] | None = None
    include_stop_str_in_output: bool = False
    n: int = 1
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None
    temperature: float | None = None
    logprobs: int | None = None
    logprobs_mode: str = "raw"
    detokenize: bool = True


@dataclasses.dataclass
class Logprob:
    logprob: float
    rank: int | None = None


@dataclasses.dataclass
class FakeCompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    logprobs: list[dict[int, Logprob]] | None
    finish_reason: str | None
    stop_reason: int | str | None


@dataclasses.dataclass
class FakeRequestOutput:
    request_id: int
    prompt_token_ids: list[int]
    outputs: list[FakeCompletionOutput]
    finished: bool = True


class FakeTrtllmLLM:
    """A stand-in for `tensorrt_llm.LLM` (PyTorch backend, GPU-only) with what the `trtllm` backend calls."""

    def __init__(self, model: str, tokenizer: str | None = None, **kwargs: Any) -> None:
        self.args = {"model": model, "tokenizer": tokenizer, **kwargs}
        self.calls: list[tuple[str, dict[str, Any]]] = [("__init__", dict(self.args))]
        self._runner = _HFModelRunner(model, tokenizer, kwargs.get("dtype", "auto"))
        self._requests = 0
        self._asleep = False

    def generate(self, inputs: Any, sampling_params: Any = None, use_tqdm: bool = True, **kwargs: Any) -> list[FakeRequestOutput]:
        if self._asleep:
            raise RuntimeError("generate() while asleep: the weights and KV cache are released")
        prompts = [list(i["prompt_token_ids"]) if isinstance(i, dict) else list(i) for i in inputs]
        params = sampling_params if isinstance(sampling_params, list) else [sampling_params or FakeTrtllmSamplingParams()] * len(prompts)
        self.calls.append(("generate", {"requests": len(prompts), "sampling_params": [dataclasses.asdict(p) for p in params]}))
        return [self._one(ids, p) for ids, p in zip(prompts, params, strict=True)]

    def _one(self, ids: list[int], p: FakeTrtllmSamplingParams) -> FakeRequestOutput:
        limit = self.args.get("max_seq_len")
        if limit is not None and len(ids) + p.max_tokens > limit:
            raise ValueError(f"prompt ({len(ids)}) + max_tokens ({p.max_tokens}) exceeds max_seq_len ({limit})")
        stops = [p.stop] if isinstance(p.stop, str) else list(p.stop or [])
        # TensorRT-LLM matches stop strings as the token sequences their encodings give.
        stop_words = [(s, self._runner.tokenizer.encode(s, add_special_tokens=False)) for s in stops]
        end_id = p.end_id if p.end_id is not None else self._runner.tokenizer.eos_token_id
        end_ids = {end_id} | set(p.stop_token_ids or ())

        def stop_word(response: list[int]) -> str | None:
            return next((s for s, words in stop_words if words and response[-len(words):] == words), None)

        greedy = p.temperature == 0 or p.top_k == 1 or p.top_p == 0.0
        seed = p.seed if p.seed is not None else 0  # the C++ runtime's default seed is 0
        self._requests += 1
        response, logprobs, kind, matched = self._runner.sample(
            ids, max_new_tokens=p.max_tokens, temperature=0.0 if greedy else (p.temperature or 1.0),
            top_p=p.top_p if p.top_p is not None else 1.0, top_k=p.top_k, seed=seed, end_ids=end_ids, stop=stop_word,
            processed_logprobs=p.logprobs_mode == "processed",
        )
        if kind == "stop" and isinstance(matched, str) and not p.include_stop_str_in_output:
            cut = len(dict(stop_words)[matched])
            response, logprobs = response[:-cut], logprobs[:-cut]
        steps = [{tok: Logprob(lp, None)} for tok, lp in zip(response, logprobs, strict=True)] if p.logprobs else None
        output = FakeCompletionOutput(
            index=0, text=self._runner.tokenizer.decode(response) if p.detokenize else "", token_ids=response,
            logprobs=steps, finish_reason=kind, stop_reason=matched if kind == "stop" and matched != end_id else None,
        )
        return FakeRequestOutput(request_id=self._requests, prompt_token_ids=ids, outputs=[output])

    def _collective_rpc(self, method: str, args: tuple = (), kwargs: dict | None = None, **_: Any) -> list[Any]:
        """The RPC the backend uses for refit ("update_weights") and memory ("sleep" / "wakeup")."""
        if method == "update_weights":
            (handles,) = args
            if handles is None:
                self.calls.append(("update_weights", {"finalize": True}))
                return [None]
            payload = handles[get_device_uuid(None)]
            tensors = [(name, func(*fargs)) for name, (func, fargs) in payload]
            self.calls.append(("update_weights", {**_summary(tensors), "devices": list(handles)}))
            unknown = self._runner.load(tensors)
            if unknown:
                raise ValueError(f"unknown parameters: {unknown}")
            return [None]
        if method in ("sleep", "wakeup"):
            (tags,) = args
            self.calls.append((method, {"tags": [getattr(t, "value", t) for t in tags]}))
            if method == "sleep":
                self._runner.release(keep_copy=True)
                self._asleep = True
            else:
                self._runner.resume()
                self._asleep = False
            return [None]
        raise AttributeError(f"the fake TensorRT-LLM worker has no method '{method}'")

    def shutdown(self) -> None:
        self.calls.append(("shutdown", {}))


def get_device_uuid(device: int | None) -> str:
    """Stand-in for tensorrt_llm._torch.utils.get_device_uuid; the fake's only device is the CPU."""
    return "CPU-fake" if device is None else f"GPU-fake-{device}"


TRTLLM_API = types.SimpleNamespace(
    LLM=FakeTrtllmLLM, SamplingParams=FakeTrtllmSamplingParams, ExecutorMemoryType=ExecutorMemoryType,
    get_device_uuid=get_device_uuid,
)
