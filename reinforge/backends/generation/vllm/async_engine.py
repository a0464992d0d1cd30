"""vLLM's `AsyncLLM` behind a synchronous face: its own event loop in a daemon thread.

Why a thread: the algorithms and the rollout loop are synchronous, but `AsyncLLM` must live
inside a running event loop (its output handler is an asyncio task). The loop thread owns the
engine; callers submit coroutines to it and block on the result, or, for streaming, read a
queue that the loop fills as each sample finishes. The engine core always runs in its own
process (vLLM's async client has no in-process mode), so refit ships a closure to the worker.

`generate` and the other methods mirror the subset of `vllm.LLM` the backend uses, so the
backend code is the same for both engines; `stream` is what only this engine can do.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import attrs


@attrs.define
class FinishedSample:
    """One finished completion: the prompt it answers, which of its n samples, tokens and logprobs."""

    prompt: int  # index of the prompt in the request list
    index: int  # 0..n-1 within that prompt
    token_ids: list[int]
    logprobs: list[float] | None  # per sampled token; None when logprobs were not requested
    finish_reason: str | None


_DONE = object()


class AsyncEngine:
    """An `AsyncLLM` driven from synchronous code (see the module docstring)."""

    def __init__(self, engine_kwargs: dict[str, Any]) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="vllm-async-engine", daemon=True)
        self._thread.start()
        self._requests = 0
        self.engine = self._run(self._create(engine_kwargs))

    @staticmethod
    async def _create(engine_kwargs: dict[str, Any]) -> Any:
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        # Created inside the loop so that its output handler task runs on this loop.
        return AsyncLLM.from_engine_args(AsyncEngineArgs(disable_log_stats=True, **engine_kwargs))

    def _run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    # ------------------------------------------------------------------ generation
    def stream(self, prompts: list[Any], params: list[Any]) -> Iterator[FinishedSample]:
        """Yield each completion as soon as it finishes (any order); abandoning the iterator aborts the rest."""
        finished: queue.Queue[Any] = queue.Queue()
        first_id = self._requests
        self._requests += len(prompts)

        async def one(prompt_index: int) -> None:
            from vllm.sampling_params import RequestOutputKind

            sampling = params[prompt_index].clone()
            sampling.output_kind = RequestOutputKind.DELTA  # only new tokens each step: no quadratic copying
            tokens: dict[int, list[int]] = {}
            logprobs: dict[int, list[float]] = {}
            async for output in self.engine.generate(prompts[prompt_index], sampling, request_id=str(first_id + prompt_index)):
                for completion in output.outputs:
                    new_ids = list(completion.token_ids)
                    tokens.setdefault(completion.index, []).extend(new_ids)
                    if completion.logprobs:
                        logprobs.setdefault(completion.index, []).extend(
                            float(step[token].logprob) for token, step in zip(new_ids, completion.logprobs, strict=True)
                        )
                    if completion.finish_reason is not None:
                        finished.put(FinishedSample(
                            prompt=prompt_index,
                            index=completion.index,
                            token_ids=tokens.pop(completion.index),
                            logprobs=logprobs.pop(completion.index, None if sampling.logprobs is None else []),
                            finish_reason=completion.finish_reason,
                        ))

        async def all_requests() -> None:
            try:
                await asyncio.gather(*(one(i) for i in range(len(prompts))))
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which re-raises it
                finished.put(exc)
            finally:
                finished.put(_DONE)

        future = asyncio.run_coroutine_threadsafe(all_requests(), self._loop)
        try:
            while (item := finished.get()) is not _DONE:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            if not future.done():  # the consumer stopped early: cancel, which aborts the requests in vLLM
                future.cancel()

    def generate(self, prompts: list[Any], params: list[Any]) -> list[list[FinishedSample]]:
        """Every completion, grouped by prompt and ordered by sample index (what `LLM.generate` returns)."""
        grouped: list[list[FinishedSample]] = [[] for _ in prompts]
        for sample in self.stream(prompts, params):
            grouped[sample.prompt].append(sample)
        return [sorted(samples, key=lambda s: s.index) for samples in grouped]

    # ------------------------------------------------------------------ engine control
    def collective_rpc(self, method: str | Callable[..., Any], kwargs: dict[str, Any] | None = None) -> list[Any]:
        return self._run(self.engine.collective_rpc(method, kwargs=kwargs))

    def reset_prefix_cache(self) -> None:
        self._run(self.engine.reset_prefix_cache())

    def sleep(self, level: int = 1) -> None:
        self._run(self.engine.sleep(level))

    def wake_up(self) -> None:
        self._run(self.engine.wake_up())

    def get_tokenizer(self) -> Any:
        return self.engine.get_tokenizer()

    def shutdown(self) -> None:
        engine, self.engine = self.engine, None
        if engine is not None:
            self._loop.call_soon_threadsafe(engine.shutdown)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=60)
        if not self._thread.is_alive():
            self._loop.close()
