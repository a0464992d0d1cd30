"""Checks of a local JSON/JSONL dataset file before `datasets` reads it.

Why: `datasets` reports an empty file as `StopIteration`, bytes that are not UTF-8 as a
traceback from deep inside pyarrow, and a 30 MB row by spending minutes in Arrow and then in
the tokenizer. One pass over the file's lines (a few hundred MB/s) names the file, the line and
what to do instead, before any of that starts.
"""

from __future__ import annotations

import json
from pathlib import Path

from reinforge.core.errors import ReinforgeError

# A row this long is far beyond any context the project trains on (about a million tokens), and
# tokenizing it takes minutes; the readers' `max_row_bytes` option raises it.
DEFAULT_MAX_ROW_BYTES = 4_000_000


def check_dataset_file(path: Path, *, max_row_bytes: int = DEFAULT_MAX_ROW_BYTES) -> None:
    """Raise a ReinforgeError naming `path` (and the line) if it is empty, not UTF-8, has an oversized
    row or (JSONL) a line that is not a JSON object. Parquet files are binary and left to `datasets`."""
    suffix = path.suffix.lower()
    if suffix not in (".json", ".jsonl"):
        return
    if not path.is_file():  # a device or a pipe: /dev/zero would be read forever
        raise ReinforgeError(f"dataset path {str(path)!r} is not a regular file; name a .json or .jsonl file")
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise ReinforgeError(f"cannot read dataset file {str(path)!r}: {exc.strerror or exc}") from None
    rows = 0
    with handle:
        for number, line in enumerate(_lines(handle, path, max_row_bytes if suffix == ".jsonl" else None), start=1):
            text = _decode(line.removeprefix(b"\xef\xbb\xbf") if number == 1 else line, path, number)  # datasets reads a BOM fine
            if not text.strip():
                continue
            if suffix == ".jsonl":
                _check_json_row(text, path, number, rows)
            rows += 1
    if rows == 0:
        raise ReinforgeError(
            f"dataset file {str(path)!r} is empty (no rows); point the dataset `path` at a file with one JSON "
            "object per line (.jsonl), a JSON list of objects (.json) or a Parquet file."
        )


def _lines(handle, path: Path, max_row_bytes: int | None):  # noqa: ANN001, ANN202 - a binary file -> its lines
    """The file's lines; with a limit, a line longer than it is an error (it is never read whole)."""
    number = 0
    while True:
        number += 1
        line = handle.readline() if max_row_bytes is None else handle.readline(max_row_bytes + 1)
        if not line:
            return
        if max_row_bytes is not None and len(line.rstrip(b"\r\n")) > max_row_bytes:
            raise ReinforgeError(
                f"line {number} of dataset file {str(path)!r} is longer than {max_row_bytes:,} bytes (the "
                "dataset config's `max_row_bytes`); a row that long is far beyond any training context and "
                "would take minutes to tokenize. Remove or shorten that row, or raise `max_row_bytes` "
                "(e.g. data.dataset_cfg.max_row_bytes) if it is meant to be there."
            )
        yield line


def _decode(line: bytes, path: Path, number: int) -> str:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ReinforgeError(
            f"line {number} of dataset file {str(path)!r} is not UTF-8 text (byte 0x{line[exc.start]:02x} at "
            f"column {exc.start + 1}); convert the file to UTF-8 (e.g. `iconv -f latin1 -t utf-8`)."
        ) from None


def _check_json_row(text: str, path: Path, number: int, row: int) -> None:
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        why = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
        raise ReinforgeError(
            f"line {number} (row {row}, counting from 0) of dataset file {str(path)!r} is not valid JSON "
            f"({why}); a .jsonl file holds one JSON object per line."
        ) from None
    if not isinstance(value, dict):
        raise ReinforgeError(
            f"line {number} (row {row}, counting from 0) of dataset file {str(path)!r} is a JSON "
            f"{type(value).__name__}, not an object; a .jsonl file holds one JSON object per line, "
            'e.g. {"problem": "...", "answer": "..."}.'
        )
