"""Per-phase wall-clock timing, so every step says where its time went."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager


class Timer:
    """Accumulates seconds per phase name until `pop()`; nested phases are allowed and overlap."""

    def __init__(self) -> None:
        self._seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self._seconds[name] += time.perf_counter() - start

    def add(self, name: str, seconds: float) -> None:
        self._seconds[name] += seconds

    def pop(self, prefix: str = "timing/") -> dict[str, float]:
        """The phases measured since the last pop, as `timing/<phase>` metrics; then reset."""
        metrics = {f"{prefix}{name}": seconds for name, seconds in self._seconds.items()}
        self._seconds.clear()
        return metrics
