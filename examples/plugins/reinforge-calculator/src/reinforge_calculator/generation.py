"""`CalculatorStopGeneration`: any registered generation backend, stopping each turn after a calculator call.

A wrapper, not an engine: it builds the backend its `engine` option names (hf by default) through the registry
and adds `</calc>` to the stop strings of every call, so a turn ends where the environment answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import attrs

import reinforge as rf


@dataclass(frozen=True)
class CalculatorStopOptions:
    engine: str = field(default="hf", metadata={"doc": "the generation backend that samples (any registered one)"})
    stop: str = field(default="</calc>", metadata={"doc": "the stop string added to every call"})


class CalculatorStopGeneration:
    def __init__(self, model: Any, options: CalculatorStopOptions | None = None, *, generation: Any, seed: int) -> None:
        self.options = options or CalculatorStopOptions()
        inner = rf.Registry.create().generation_backend(self.options.engine)
        self.inner = inner(model, None, generation=generation, seed=seed)

    def generate(self, batch: rf.Batch, sampling: rf.SamplingParams) -> rf.Batch:
        stops = sampling.stop_strings
        if self.options.stop not in stops:
            stops = (*stops, self.options.stop)
        return self.inner.generate(batch, attrs.evolve(sampling, stop_strings=stops))  # SamplingParams is frozen attrs

    def update_weights(self, named_tensors: Any) -> None:
        self.inner.update_weights(named_tensors)

    def sleep(self) -> None:
        self.inner.sleep()

    def wake(self) -> None:
        self.inner.wake()

    def shutdown(self) -> None:
        self.inner.shutdown()
