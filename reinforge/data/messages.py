"""Chat messages read from dataset rows: normalised to `{"role", "content"}` dicts, with errors that name the row.

Why a module of its own: the SFT and preference readers both accept a field that is either a
plain string or a message list, and a bad row must be reported as file + row + key, so that a
user can open the file and fix it, instead of a KeyError deep inside tokenisation.
"""

from __future__ import annotations

from typing import Any

from reinforge.core.errors import ReinforgeError

Message = dict[str, str]
ROLES = ("system", "user", "assistant", "tool")


class RowLocation:
    """Where a row came from, for error messages: `file 'train.jsonl', row 3 (counting from 0), key 'chosen'`."""

    def __init__(self, source: str, row: int) -> None:
        self.source = source  # "file '...'" or "dataset '...'"
        self.row = row

    @classmethod
    def of(cls, path: str, row: int) -> RowLocation:
        kind = "file" if path.lower().endswith((".json", ".jsonl", ".parquet")) else "dataset"
        return cls(f"{kind} {path!r}", row)

    def error(self, key: str, problem: str, fix: str) -> ReinforgeError:
        return ReinforgeError(f"{self.source}, row {self.row} (counting from 0), key {key!r}: {problem}. {fix}")


def select_rows(dataset: Any, *, seed: int | None, max_samples: int | None) -> tuple[Any, list[int]]:
    """(the chosen rows, their positions in the source): shuffled with `seed` (None: file order), capped.

    The positions are kept so that an error names the row of the file, not of the shuffled copy.
    """
    import random

    rows = list(range(len(dataset)))
    if seed is not None:
        random.Random(seed).shuffle(rows)
    rows = rows[:max_samples] if max_samples is not None else rows
    return (dataset if rows == list(range(len(dataset))) else dataset.select(rows)), rows


def column_error(source: str, missing: list[str], columns: list[str], fix: str) -> ReinforgeError:
    names = ", ".join(repr(k) for k in missing)
    return ReinforgeError(f"{source!r} has no column {names}; its columns are {columns}. {fix}")


def as_messages(value: Any, where: RowLocation, key: str, *, role: str) -> list[Message]:
    """`value` as a message list: a string becomes one message of `role`; a list is checked and normalised."""
    if value is None:
        raise where.error(key, "the value is missing (null or absent in this row)", "Fill it in or drop the row.")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)  # a bare number ("chosen": 4) read from JSON is still an answer's text
    if isinstance(value, str):
        if not value.strip():
            raise where.error(key, "the text is empty", "Every prompt and response needs some text; drop the row.")
        return [{"role": role, "content": value}]
    if not isinstance(value, list) or not value:
        raise where.error(
            key,
            f"expected a string or a non-empty list of {{role, content}} messages, got {type(value).__name__} {value!r:.80}",
            "Point the reader's key options at the right column.",
        )
    messages = []
    for i, message in enumerate(value):
        if not isinstance(message, dict) or message.get("role") not in ROLES or not isinstance(message.get("content"), str):
            raise where.error(
                key,
                f"message {i} is not a {{role, content}} dict with a role in {ROLES}: {message!r:.120}",
                "Chat records hold lists like [{\"role\": \"user\", \"content\": \"...\"}].",
            )
        messages.append({"role": message["role"], "content": message["content"]})
    return messages


def check_response(messages: list[Message], where: RowLocation, key: str) -> list[Message]:
    """A response: it ends with a non-empty assistant message (the tokens that are trained on)."""
    last = messages[-1]
    if last["role"] != "assistant":
        raise where.error(key, f"the response ends with a {last['role']!r} message, not an assistant one", "Check the column holds responses.")
    if not last["content"].strip():
        raise where.error(key, "the assistant response is empty", "Drop the row: there is nothing to learn from it.")
    return messages
