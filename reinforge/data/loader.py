"""An endless, resumable stream of prompt batches.

RL consumes prompts step by step, for as many epochs as the run lasts, and a resumed run must
continue with the next prompt it has not seen rather than restart the epoch. So the order is a
pure function of `(seed, epoch)` and the state is two integers: the epoch and how many batches
of it were handed out.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Generic, TypeVar

import numpy as np

from reinforge.core.errors import ReinforgeError

T = TypeVar("T")


class PromptLoader(Generic[T]):
    """Yields lists of `batch_size` prompts forever, reshuffled every epoch with a seeded generator.

    Each epoch is a fresh permutation (or the original order when `shuffle=False`) cut into
    `len(prompts) // batch_size` batches; the few prompts left over change from epoch to epoch
    and are not served in that epoch, so every batch is full.
    """

    def __init__(self, prompts: Sequence[T], batch_size: int, *, seed: int, shuffle: bool = True) -> None:
        if batch_size < 1:
            raise ReinforgeError(f"the prompt batch size must be at least 1, got {batch_size}.")
        if len(prompts) < batch_size:
            raise ReinforgeError(
                f"only {len(prompts)} prompts for batches of {batch_size}; lower the number of prompts per "
                "step, raise the dataset's max_samples / repeat, or check why prompts were dropped (too long?)."
            )
        self.prompts = prompts
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0
        self.batch_in_epoch = 0  # batches of `epoch` already handed out
        self._order: np.ndarray | None = None  # permutation of the current epoch, built on demand

    @property
    def batches_per_epoch(self) -> int:
        return len(self.prompts) // self.batch_size

    def __len__(self) -> int:
        return self.batches_per_epoch

    def __iter__(self) -> Iterator[list[T]]:
        return self

    def __next__(self) -> list[T]:
        if self.batch_in_epoch == self.batches_per_epoch:
            self.epoch += 1
            self.batch_in_epoch = 0
            self._order = None
        if self._order is None:
            self._order = self._permutation(self.epoch)
        start = self.batch_in_epoch * self.batch_size
        batch = [self.prompts[int(i)] for i in self._order[start : start + self.batch_size]]
        self.batch_in_epoch += 1
        return batch

    def peek(self, ahead: int = 0) -> list[T]:
        """The batch `ahead` batches after the next one, without moving the stream.

        Why: a producer that generates for future steps (asynchronous rollouts) must read prompts ahead
        while the saved position (`state_dict`) stays at what training consumed, so a resumed run still
        sees each prompt exactly once. `peek(0)` is what `next()` returns next.
        """
        if ahead < 0:
            raise ValueError(f"peek looks ahead, not back: ahead must be >= 0, got {ahead}")
        index = self.batch_in_epoch + ahead
        epoch = self.epoch + index // self.batches_per_epoch
        index %= self.batches_per_epoch
        order = self._order if epoch == self.epoch and self._order is not None else self._permutation(epoch)
        start = index * self.batch_size
        return [self.prompts[int(i)] for i in order[start : start + self.batch_size]]

    def lookahead(self) -> Iterator[list[T]]:
        """The batches `next()` will return, in order, read without consuming them (see `peek`)."""
        ahead = 0
        while True:
            yield self.peek(ahead)
            ahead += 1

    def _permutation(self, epoch: int) -> np.ndarray:
        n = len(self.prompts)
        if not self.shuffle:
            return np.arange(n)
        # One independent stream per (seed, epoch): no overlap between seed s, epoch e+1 and seed s+1, epoch e.
        return np.random.default_rng([self.seed, epoch]).permutation(n)

    def state_dict(self) -> dict[str, Any]:
        """Where the stream stands: the next batch is batch `batch_in_epoch` of `epoch`."""
        return {
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "seed": self.seed,
            "shuffle": self.shuffle,
            "batch_size": self.batch_size,
            "num_prompts": len(self.prompts),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue where `state` was taken; the prompts, batch size, seed and shuffle must be the same as then."""
        mine = self.state_dict()
        keys = ("num_prompts", "batch_size", "seed", "shuffle")
        changed = [f"{key}: {state.get(key)!r} then, {mine[key]!r} now" for key in keys if state.get(key) != mine[key]]
        if changed:
            raise ReinforgeError(
                f"cannot resume the prompt stream: {'; '.join(changed)}. The saved position only means the same "
                "thing with the same prompts and settings; restore the original data and settings to resume, "
                "or start a fresh run (a new checkpoint directory)."
            )
        if not 0 <= state["batch_in_epoch"] <= self.batches_per_epoch or state["epoch"] < 0:
            raise ReinforgeError(f"the saved prompt stream position {state['epoch']}:{state['batch_in_epoch']} is invalid.")
        self.epoch = int(state["epoch"])
        self.batch_in_epoch = int(state["batch_in_epoch"])
        self._order = None
