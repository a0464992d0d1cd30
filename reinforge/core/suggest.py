"""`closest`: the "did you mean ...?" of every unknown-name and unknown-key message.

Why not `difflib.get_close_matches` alone: it ranks by a similarity ratio that rewards long shared
runs anywhere in the names, so `max_new_token` came out closer to `max_batch_tokens` than to
`max_new_tokens`. A typo is a few edits: the candidates are the names difflib finds similar or
that lie within a few edits, ranked by edit distance over the whole name, then by the length of
the common prefix (people mistype endings more often than beginnings).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance: insertions, deletions and substitutions, one each."""
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i]
        for j, char_b in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b)))
        previous = current
    return previous[-1]


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for char_a, char_b in zip(a, b):
        if char_a != char_b:
            break
        n += 1
    return n


def closest(name: str, known: Iterable[str], *, cutoff: float = 0.6) -> str | None:
    """The known name `name` most likely misspells, or None when none is close.

    Close: a difflib similarity of at least `cutoff`, or at most a third of `name`'s length in edits.
    """
    ranked = []
    for candidate in known:
        distance = edit_distance(name, candidate)
        similar = difflib.SequenceMatcher(None, name, candidate).ratio() >= cutoff
        if similar or distance <= max(1, len(name) // 3):
            ranked.append((distance, -_common_prefix(name, candidate), candidate))
    return min(ranked)[2] if ranked else None
