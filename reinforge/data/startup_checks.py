"""Warnings at start about data that will train badly without failing: said once, with the counts.

- `data.max_input_seq_length` above `policy.max_total_sequence_length`: a prompt longer than the
  whole sequence passes the prompt limit and leaves no room for a response;
- a `problem` or `answer` column that mixes types (an int problem among strings, a list answer):
  the prompt template and the verifier see `str(value)`, so those rows are usually scored wrong.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from reinforge.core.run_guard import warn

CHECKED_COLUMNS = ("problem", "answer")


def check_sequence_limits(max_input: int, max_total: int, prompt_lengths: Sequence[int], *, split: str = "training") -> str | None:
    """Warn when prompts may fill the whole sequence; returns the warning (None when the limits are consistent)."""
    if max_input <= max_total:
        return None
    full = sum(1 for n in prompt_lengths if n >= max_total)
    message = (
        f"data.max_input_seq_length={max_input} is above policy.max_total_sequence_length={max_total}: a prompt of "
        f"{max_total} tokens or more leaves no room for a response; {full} of {len(prompt_lengths)} {split} prompts are "
        f"that long (the longest has {max(prompt_lengths, default=0)} tokens). Set data.max_input_seq_length below "
        "policy.max_total_sequence_length (by at least policy.generation.max_new_tokens)"
    )
    warn(message)
    return message


def check_column_types(records: Sequence[Mapping[str, Any]], *, source: str, split: str = "training") -> list[str]:
    """Warn, per column, when `problem` or `answer` holds values of several types; returns the warnings."""
    messages = []
    for column in CHECKED_COLUMNS:
        types = Counter(type(r[column]).__name__ for r in records if column in r and r[column] is not None)
        if len(types) < 2:
            continue
        counts = ", ".join(f"{n} {name}" for name, n in types.most_common())
        first = {name: next(i for i, r in enumerate(records) if type(r.get(column)).__name__ == name) for name in types}
        rows = ", ".join(f"{name} in row {i}" for name, i in first.items())
        message = (
            f"column '{column}' of the {split} data ({source}) mixes types: {counts} (first {rows}). The prompt and "
            "the verifier see each value as text, so a list or number where text is expected is usually scored "
            f"wrong; convert the column to one type"
        )
        warn(message)
        messages.append(message)
    return messages
