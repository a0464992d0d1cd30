"""`Batch`, the one data structure that moves between the driver, the rollout and the backends.

A batch is a column store: each column is either a tensor whose dim 0 is the row, or a Python list
with one entry per row (messages, metadata, task names). Every row operation (select, repeat,
shard, split, microbatch, pack) treats tensors and lists together, so the two can never drift apart.
The contract is docs/internals/batch.md; shapes and column names are in `reinforge.core.interfaces`.

Per-token columns are the tensors with at least two dims whose dim 1 is the batch's padded width
`T` (the widest dim 1 among them); `trim` cuts those and leaves every other column alone.
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, KeysView, Mapping, Sequence
from typing import Any

import attrs
import torch

from reinforge.core.errors import ReinforgeError

Column = torch.Tensor | list  # a tensor with dim 0 = rows, or one list entry per row


class BatchError(ReinforgeError, ValueError):
    """Rows that do not fit an operation (row counts, divisibility, lengths, an empty batch).

    A `ReinforgeError` because a config (batch sizes, token budgets) or a dataset usually causes it,
    and a `ValueError` because the contract promises one for uneven shards.
    """


def _rows_of(key: str, value: Any) -> int:
    if isinstance(value, torch.Tensor):
        if value.dim() == 0:
            raise BatchError(f"column '{key}' is a 0-dim tensor; a batch column needs a row dimension (dim 0)")
        return value.shape[0]
    if isinstance(value, list):
        return len(value)
    raise TypeError(f"column '{key}' must be a torch.Tensor or a list, got {type(value).__name__}")


class Batch:
    """Column store: str -> torch.Tensor (dim 0 = rows) or list (len = rows). All columns share the row count.

    Mapping-like: `batch["input_ids"]`, `"token_mask" in batch`, `keys()`, iteration over column
    names. `len(batch)` is the number of rows (as in TensorDict), not the number of columns.
    Row operations return new batches; entries of list columns are shared, not copied.
    """

    __slots__ = ("_columns",)

    def __init__(self, data: Mapping[str, Column] | None = None, /, **columns: Column) -> None:
        self._columns: dict[str, Column] = {}
        for key, value in {**(data or {}), **columns}.items():
            self[key] = value

    @classmethod
    def _trusted(cls, columns: dict[str, Column]) -> Batch:
        """Wrap columns that a row operation already made consistent (skips the checks)."""
        batch = cls.__new__(cls)
        batch._columns = columns
        return batch

    @classmethod
    def from_sequences(
        cls, sequences: Sequence[Sequence[int]], pad_id: int, *, dtype: torch.dtype = torch.long
    ) -> Batch:
        """Right-pad token id lists into `input_ids  # [B, T]` with `input_lengths  # [B]` (T = longest)."""
        lengths = [len(seq) for seq in sequences]
        input_ids = torch.full((len(sequences), max(lengths, default=0)), pad_id, dtype=dtype)  # [B, T]
        for row, seq in enumerate(sequences):
            input_ids[row, : len(seq)] = torch.as_tensor(list(seq), dtype=dtype)
        return cls(input_ids=input_ids, input_lengths=torch.tensor(lengths, dtype=torch.long))

    # ------------------------------------------------------------------ mapping-like
    def __getitem__(self, key: str) -> Column:
        if not isinstance(key, str):
            raise TypeError(f"batch columns are named by str, got {type(key).__name__}; use select() to pick rows")
        try:
            return self._columns[key]
        except KeyError:
            raise KeyError(f"no column '{key}' in the batch; columns: {', '.join(self._columns) or '(none)'}") from None

    def __setitem__(self, key: str, value: Column) -> None:
        if not isinstance(key, str):
            raise TypeError(f"batch column names must be str, got {type(key).__name__}")
        rows = _rows_of(key, value)
        others = [k for k in self._columns if k != key]
        if others and rows != len(self):
            raise BatchError(f"column '{key}' has {rows} rows but the batch has {len(self)} (column '{others[0]}')")
        self._columns[key] = value

    def __delitem__(self, key: str) -> None:
        del self._columns[key]

    def __contains__(self, key: object) -> bool:
        return key in self._columns

    def __iter__(self) -> Iterator[str]:
        return iter(self._columns)

    def __len__(self) -> int:
        for value in self._columns.values():
            return _rows_of("", value)
        return 0

    def keys(self) -> KeysView[str]:
        return self._columns.keys()

    def items(self) -> ItemsView[str, Column]:
        return self._columns.items()

    def get(self, key: str, default: Any = None) -> Any:
        return self._columns.get(key, default)

    def copy(self) -> Batch:
        """A new batch holding the same tensors and lists (shallow)."""
        return Batch._trusted(dict(self._columns))

    def __repr__(self) -> str:
        parts = []
        for key, value in self._columns.items():
            if isinstance(value, torch.Tensor):
                parts.append(f"{key}=Tensor{list(value.shape)} {str(value.dtype).removeprefix('torch.')}")
            else:
                parts.append(f"{key}=list[{len(value)}]")
        return f"Batch(rows={len(self)}{''.join(', ' + p for p in parts)})"

    # ------------------------------------------------------------------ row operations
    def select(self, indices: Sequence[int] | torch.Tensor) -> Batch:
        """The given rows, in the given order (repeats allowed, negative indices count from the end).

        A bool tensor of length `len(self)` is a row mask.
        """
        n = len(self)
        if isinstance(indices, torch.Tensor):
            if indices.dtype == torch.bool:
                if indices.shape != (n,):
                    raise ValueError(f"a row mask must have shape [{n}], got {list(indices.shape)}")
                indices = indices.nonzero().flatten()
            elif indices.is_floating_point() or indices.is_complex():
                raise TypeError(f"row indices must be integers, got a {indices.dtype} tensor")
            index = indices.detach().to("cpu", torch.long).flatten()  # [K]
        else:
            if any(isinstance(i, bool) for i in indices):
                raise TypeError("row indices must be ints; pass a bool *tensor* to select by mask")
            index = torch.tensor(list(indices), dtype=torch.long)  # [K]
        if index.numel() and (int(index.min()) < -n or int(index.max()) >= n):
            raise IndexError(f"row index out of range for a batch of {n} rows: {index.tolist()}")
        index = torch.where(index < 0, index + n, index)
        positions = index.tolist()
        return Batch._trusted({
            key: value[index.to(value.device)] if isinstance(value, torch.Tensor) else [value[i] for i in positions]
            for key, value in self._columns.items()
        })

    def repeat_interleave(self, n: int) -> Batch:
        """Each row `n` times, the copies adjacent (row 0, row 0, row 1, row 1, ... for n=2): G samples per prompt."""
        if n < 1:
            raise ValueError(f"repeat_interleave needs n >= 1, got {n}")
        out: dict[str, Column] = {}
        for key, value in self._columns.items():
            if isinstance(value, torch.Tensor):
                out[key] = value.repeat_interleave(n, dim=0)
            else:
                out[key] = [item for item in value for _ in range(n)]
        return Batch._trusted(out)

    def _slice(self, start: int, stop: int) -> Batch:
        """Rows [start, stop); tensors are views."""
        return Batch._trusted({key: value[start:stop] for key, value in self._columns.items()})

    def shard(self, rank: int, world_size: int) -> Batch:
        """This rank's contiguous block of rows; every rank gets the same number, so it must divide evenly."""
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        n = len(self)
        if n == 0:
            raise BatchError(f"empty batch: there are no rows to shard over {world_size} ranks")
        if n % world_size:
            raise BatchError(
                f"cannot shard {n} rows evenly over {world_size} ranks; "
                f"make the batch size a multiple of {world_size}"
            )
        size = n // world_size
        return self._slice(rank * size, (rank + 1) * size)

    def split(self, num_chunks: int) -> list[Batch]:
        """`num_chunks` contiguous chunks whose sizes differ by at most 1 (the first ones are larger)."""
        if num_chunks < 1:
            raise ValueError(f"split needs num_chunks >= 1, got {num_chunks}")
        base, extra = divmod(len(self), num_chunks)
        chunks, start = [], 0
        for i in range(num_chunks):
            stop = start + base + (1 if i < extra else 0)
            chunks.append(self._slice(start, stop))
            start = stop
        return chunks

    def microbatches(
        self, *, size: int | None = None, token_budget: int | None = None, length_key: str = "input_lengths"
    ) -> list[Batch]:
        """Consecutive groups of rows, each trimmed to its own longest row (when `length_key` is a column).

        `size`: groups of `size` rows (the last may be smaller). `token_budget`: rows are taken in
        order and a new group starts when adding a row would make rows x longest length exceed the
        budget, so each group's padded forward pass stays within it; a row longer than the budget
        gets a group of its own.
        """
        if (size is None) == (token_budget is None):
            raise ValueError("microbatches needs exactly one of size= or token_budget=")
        n = len(self)
        if n == 0:
            raise BatchError("empty batch: there are no rows to split into microbatches")
        bounds: list[tuple[int, int]] = []
        if size is not None:
            if size < 1:
                raise ValueError(f"microbatch size must be >= 1, got {size}")
            bounds = [(start, min(start + size, n)) for start in range(0, n, size)]
        else:
            assert token_budget is not None
            if token_budget < 1:
                raise ValueError(f"token_budget must be >= 1, got {token_budget}")
            lengths = self._lengths(length_key, "for a token budget")
            start, longest = 0, 0
            for row, length in enumerate(lengths):
                widened = max(longest, length)
                if row > start and (row - start + 1) * widened > token_budget:
                    bounds.append((start, row))
                    start, widened = row, length
                longest = widened
            bounds.append((start, n))
        groups = [self._slice(a, b) for a, b in bounds]
        return [g.trim(length_key) for g in groups] if length_key in self else groups

    def trim(self, length_key: str = "input_lengths") -> Batch:
        """Cut the per-token columns `# [B, T, ...]` to T = the longest row, dropping all-padding columns."""
        lengths = self._lengths(length_key, "to trim")
        width = self._token_width()
        if not lengths or width is None or max(lengths) >= width:
            return self.copy()
        keep = max(lengths)

        def cut(value: Column) -> Column:
            per_token = isinstance(value, torch.Tensor) and value.dim() >= 2 and value.shape[1] == width
            return value[:, :keep] if per_token else value

        return Batch._trusted({key: cut(value) for key, value in self._columns.items()})

    def pack(self, max_tokens: int, *, length_key: str = "input_lengths") -> list[PackedBatch]:
        """Pack the unpadded rows of `input_ids` into bins of at most `max_tokens` (first-fit decreasing).

        Rows are visited longest first (ties by row index) and each goes into the first bin that
        still has room, else into a new bin; within a bin, rows keep the order they were placed in.
        """
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        lengths = self._lengths(length_key, "to pack")
        input_ids = self["input_ids"]
        if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
            raise BatchError("packing needs 'input_ids' as a [B, T] tensor")
        for row, length in enumerate(lengths):
            if length > input_ids.shape[1]:
                raise BatchError(f"row {row} has {length_key}={length} but input_ids is only {input_ids.shape[1]} wide")
            if length > max_tokens:
                raise BatchError(
                    f"row {row} has {length} tokens ({length_key}), more than max_tokens={max_tokens} "
                    f"fit in one packed bin; raise max_tokens to at least {length} or shorten the sequence"
                )
        bins: list[list[int]] = []
        room: list[int] = []  # free tokens left in each bin
        for row in sorted(range(len(lengths)), key=lambda r: (-lengths[r], r)):
            for b, free in enumerate(room):
                if lengths[row] <= free:
                    bins[b].append(row)
                    room[b] -= lengths[row]
                    break
            else:
                bins.append([row])
                room.append(max_tokens - lengths[row])
        return [PackedBatch.build(input_ids, rows, [lengths[r] for r in rows]) for rows in bins]

    def to(self, device: torch.device | str) -> Batch:
        """Tensors moved to `device`; lists unchanged."""
        return Batch._trusted(
            {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in self._columns.items()}
        )

    def valid_token_count(self, mask_key: str = "token_mask", sample_mask_key: str = "sample_mask") -> torch.Tensor:
        """Scalar float32: sum of `token_mask * sample_mask`, the loss denominator (sample_mask optional)."""
        mask = self[mask_key]
        if not isinstance(mask, torch.Tensor):
            raise TypeError(f"'{mask_key}' must be a [B, T] tensor, got a list")
        counted = mask.float()  # [B, T]
        sample_mask = self.get(sample_mask_key)
        if sample_mask is not None:
            counted = counted * torch.as_tensor(sample_mask, dtype=torch.float32, device=mask.device)[:, None]
        return counted.sum()

    @staticmethod
    def concat(batches: Sequence[Batch], pad_values: Mapping[str, int | float] | None = None) -> Batch:
        """Rows of every batch, in order. Tensors with dims >= 2 and different widths (dim 1) are right-padded
        with `pad_values[key]` (0 by default; pass e.g. {"input_ids": pad_id}). Batches without columns are skipped.
        """
        parts = [b for b in batches if b.keys()]
        if not parts:
            return Batch()
        names = list(parts[0].keys())
        for i, part in enumerate(parts[1:], 1):
            if set(part.keys()) != set(names):
                missing = sorted(set(names) - set(part.keys()))
                extra = sorted(set(part.keys()) - set(names))
                raise BatchError(
                    f"cannot concat batches with different columns: batch {i} lacks {missing}, has extra {extra}"
                )
        out: dict[str, Column] = {}
        for key in names:
            values = [part[key] for part in parts]
            if all(isinstance(v, list) for v in values):
                out[key] = [item for v in values for item in v]
            elif all(isinstance(v, torch.Tensor) for v in values):
                out[key] = _cat_padded(key, values, (pad_values or {}).get(key, 0))
            else:
                raise BatchError(f"column '{key}' is a tensor in some batches and a list in others")
        return Batch._trusted(out)

    # ------------------------------------------------------------------ helpers
    def _lengths(self, key: str, purpose: str) -> list[int]:
        if key not in self:
            known = ", ".join(self.keys()) or "(none)"
            raise BatchError(f"the batch needs a '{key}' column {purpose}; columns: {known}")
        value = self[key]
        if isinstance(value, torch.Tensor) and (value.dim() != 1 or value.is_floating_point()):
            raise BatchError(f"'{key}' must be a 1-D integer tensor [B], got {value.dtype} {list(value.shape)}")
        lengths = [int(x) for x in (value.tolist() if isinstance(value, torch.Tensor) else value)]
        if any(x < 0 for x in lengths):
            raise BatchError(f"'{key}' holds a negative length: {lengths}")
        return lengths

    def _token_width(self) -> int | None:
        """The padded width T: the widest dim 1 among tensors with at least two dims."""
        widths = [v.shape[1] for v in self._columns.values() if isinstance(v, torch.Tensor) and v.dim() >= 2]
        return max(widths, default=None)


def _cat_padded(key: str, tensors: list[torch.Tensor], pad_value: int | float) -> torch.Tensor:
    if len({t.dim() for t in tensors}) > 1:
        raise BatchError(f"column '{key}' has different numbers of dims across batches: {[t.dim() for t in tensors]}")
    if tensors[0].dim() >= 2:
        width = max(t.shape[1] for t in tensors)
        padded = []
        for t in tensors:
            if t.shape[1] < width:
                wide = t.new_full((t.shape[0], width, *t.shape[2:]), pad_value)  # [B_i, width, ...]
                wide[:, : t.shape[1]] = t
                t = wide
            padded.append(t)
        tensors = padded
    return torch.cat(tensors, dim=0)


@attrs.define(eq=False)
class PackedBatch:
    """One bin of a packed forward pass: several unpadded rows laid end to end in a single sequence.

    `position_ids` restart at 0 for every row and `cu_seqlens` marks the boundaries, so that a
    varlen attention kernel (flash-attention convention) keeps the rows from attending to each other.
    """

    input_ids: torch.Tensor  # [1, N] the rows concatenated, N = sum(lengths)
    position_ids: torch.Tensor  # [1, N] 0..len-1 for each row
    cu_seqlens: torch.Tensor  # [k+1] int32: 0, len_0, len_0+len_1, ..., N
    rows: list[int]  # which rows of the source batch, in bin order
    lengths: list[int]  # their unpadded lengths, same order

    @classmethod
    def build(cls, input_ids: torch.Tensor, rows: list[int], lengths: list[int]) -> PackedBatch:
        """Pack `rows` of right-padded `input_ids  # [B, T]`, each cut to its length."""
        device = input_ids.device
        ids = torch.cat([input_ids[r, :n] for r, n in zip(rows, lengths)])  # [N]
        positions = torch.cat([torch.arange(n, device=device) for n in lengths])  # [N]
        cu_seqlens = torch.zeros(len(lengths) + 1, dtype=torch.int32, device=device)  # [k+1]
        cu_seqlens[1:] = torch.tensor(lengths, device=device).cumsum(0)
        return cls(input_ids=ids[None], position_ids=positions[None], cu_seqlens=cu_seqlens, rows=rows, lengths=lengths)

    @property
    def num_tokens(self) -> int:
        """N, the packed length."""
        return sum(self.lengths)

    @property
    def max_seqlen(self) -> int:
        """The longest row in the bin (varlen attention kernels ask for it)."""
        return max(self.lengths, default=0)

    def unpack(self, packed: torch.Tensor) -> list[torch.Tensor]:
        """Split a per-token output `# [1, N, ...]` back into one `# [len_i, ...]` tensor per row, in bin order."""
        if packed.dim() < 2 or packed.shape[0] != 1 or packed.shape[1] != self.num_tokens:
            raise ValueError(f"expected a [1, {self.num_tokens}, ...] tensor, got {list(packed.shape)}")
        return list(packed[0].split(self.lengths, dim=0))
