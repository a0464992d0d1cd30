"""Token exactness of multi-turn rollouts: the ids the generator returned are the trainer's masked-in spans.

Wrap any generation backend in `RecordingGeneration`, roll out, then `count_mismatches(recorder, result)`
compares, row by row, what the generator returned (ids and logprobs, per call) with what the trainer
will see (`input_ids` where `token_mask` is 1, and `generation_logprobs` there). A correct turn loop
scores 0 mismatched tokens whatever the engine, the chat template or the stop reason; the benchmark
`benchmarks/multiturn_cpu.py` counts them over 1,000+ rollouts, and an engine's conformance can too.
"""

from __future__ import annotations

from typing import Any

import attrs

from reinforge.core.batch import Batch
from reinforge.core.sampling import SamplingParams


@attrs.define
class _Call:
    prefix: list[int]
    response: list[int]
    logprobs: list[float]


class RecordingGeneration:
    """A `GenerationBackend` that records, for every row of every call, the prefix it got and what it returned."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[_Call] = []

    def generate(self, batch: Batch, sampling: SamplingParams) -> Batch:
        out = self.inner.generate(batch, sampling)
        for r in range(len(out["output_ids"])):
            start, stop = int(out["prompt_lengths"][r]), int(out["sequence_lengths"][r])
            ids = out["output_ids"][r]
            self.calls.append(_Call(ids[:start].tolist(), ids[start:stop].tolist(), out["generation_logprobs"][r, start:stop].tolist()))
        return out

    def __getattr__(self, name: str) -> Any:  # update_weights, sleep, wake, shutdown
        return getattr(self.inner, name)


@attrs.define
class Exactness:
    rollouts: int
    turns: int  # generation turns over all rollouts
    generated_tokens: int  # tokens the generator returned that belong to the rollouts
    mismatched_tokens: int  # trainer tokens marked generated that the generator did not return there, and vice versa
    mismatched_logprobs: int  # generated tokens whose trainer-side generation logprob differs from the generator's
    rows_with_missing_turns: int  # rows whose generated spans are fewer than their turns


def count_mismatches(recorder: RecordingGeneration, result: Any, *, atol: float = 0.0) -> Exactness:
    """Compare every row of a `RolloutResult` with the generator's record (see the module docstring)."""
    batch = result.batch
    by_prefix: dict[tuple[int, tuple[int, ...]], list[_Call]] = {}  # (length, last 8 ids) -> calls; full prefix checked
    for call in recorder.calls:
        by_prefix.setdefault(_key(call.prefix, len(call.prefix)), []).append(call)
    mismatched = bad_logprobs = generated = missing = turns = 0
    for r in range(len(batch)):
        length = int(batch["input_lengths"][r])
        ids = batch["input_ids"][r, :length].tolist()
        mask = batch["token_mask"][r, :length].tolist()
        logprobs = batch["generation_logprobs"][r, :length].tolist()
        covered = [False] * length
        spans = 0
        for end in range(int(batch["prompt_lengths"][r]), length + 1):
            for call in by_prefix.get(_key(ids, end), ()):  # a call whose input is this row's prefix ...
                stop = end + len(call.response)
                if ids[end:stop] != call.response or ids[:end] != call.prefix:  # ... and whose output the row continues with
                    continue
                spans += 1
                for k in range(end, stop):
                    covered[k] = True
                    bad_logprobs += abs(logprobs[k] - call.logprobs[k - end]) > atol
                break
        turns += int(result.turns[r])
        missing += spans < int(result.turns[r])
        generated += sum(covered)
        mismatched += sum(bool(m) != c for m, c in zip(mask, covered))
    return Exactness(len(batch), turns, generated, mismatched, bad_logprobs, missing)


def _key(ids: list[int], end: int) -> tuple[int, tuple[int, ...]]:
    return end, tuple(ids[max(end - 8, 0) : end])
