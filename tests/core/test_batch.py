"""Tests for `reinforge.core.batch`: every row operation, with expectations worked out by hand."""

from __future__ import annotations

import pytest
import torch

from reinforge.core.batch import Batch, BatchError, PackedBatch
from reinforge.core.errors import ReinforgeError


def make_batch(lengths: list[int], pad_id: int = -1) -> Batch:
    """Row r holds tokens 10*r + t for t < lengths[r] (so every token names its row), right-padded."""
    batch = Batch.from_sequences([[10 * r + t for t in range(n)] for r, n in enumerate(lengths)], pad_id)
    width = batch["input_ids"].shape[1]
    batch["token_mask"] = (torch.arange(width)[None, :] < batch["input_lengths"][:, None]).long()  # [B, T]
    batch["row"] = list(range(len(lengths)))
    return batch


def rows_of(batch: Batch) -> list[int]:
    return batch["row"]


# --------------------------------------------------------------------------- construction, mapping
def test_construction_from_mapping_and_keywords() -> None:
    batch = Batch({"a": torch.zeros(3, 2)}, b=[1, 2, 3])
    assert len(batch) == 3
    assert list(batch.keys()) == ["a", "b"]
    assert list(batch) == ["a", "b"]  # iteration is over column names, like a mapping
    assert "a" in batch and "c" not in batch
    assert batch.get("c") is None and batch.get("c", 7) == 7
    assert dict(batch.items())["b"] == [1, 2, 3]


def test_empty_batch_has_no_rows() -> None:
    assert len(Batch()) == 0
    assert len(Batch(x=torch.zeros(0, 4), y=[])) == 0
    assert "rows=0" in repr(Batch())


def test_mismatched_row_counts_on_construction() -> None:
    with pytest.raises(BatchError, match="column 'b' has 2 rows but the batch has 3"):
        Batch(a=torch.zeros(3), b=[1, 2])


def test_mismatched_row_counts_on_setitem() -> None:
    batch = Batch(a=torch.zeros(3))
    with pytest.raises(BatchError, match="has 4 rows but the batch has 3"):
        batch["b"] = torch.zeros(4, 2)
    assert "b" not in batch
    batch["a"] = torch.ones(5)  # replacing the only column may change the row count
    assert len(batch) == 5


def test_batch_error_is_user_facing_and_a_value_error() -> None:
    with pytest.raises(BatchError) as info:
        Batch(a=[1], b=[1, 2])
    assert isinstance(info.value, ReinforgeError) and isinstance(info.value, ValueError)


def test_bad_column_types() -> None:
    with pytest.raises(TypeError, match="torch.Tensor or a list"):
        Batch(a=(1, 2))
    with pytest.raises(BatchError, match="0-dim"):
        Batch(a=torch.tensor(1.0))
    batch = Batch(a=[1])
    with pytest.raises(TypeError, match="select"):
        batch[0]  # type: ignore[index]
    with pytest.raises(KeyError, match="columns: a"):
        batch["missing"]


def test_copy_is_shallow() -> None:
    batch = Batch(a=torch.zeros(2), b=[{"k": 1}, {"k": 2}])
    copy = batch.copy()
    copy["c"] = [0, 0]
    assert "c" not in batch
    assert copy["a"] is batch["a"] and copy["b"] is batch["b"]
    del copy["a"]
    assert "a" in batch and "a" not in copy


def test_from_sequences_right_pads() -> None:
    batch = Batch.from_sequences([[5, 6, 7], [8], []], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0], [0, 0, 0]]
    assert batch["input_ids"].dtype == torch.long
    assert batch["input_lengths"].tolist() == [3, 1, 0]
    empty = Batch.from_sequences([], pad_id=0)
    assert len(empty) == 0 and list(empty["input_ids"].shape) == [0, 0]


def test_repr_names_columns_and_shapes() -> None:
    text = repr(Batch(input_ids=torch.zeros(2, 3, dtype=torch.long), messages=[[], []]))
    assert text == "Batch(rows=2, input_ids=Tensor[2, 3] int64, messages=list[2])"


# --------------------------------------------------------------------------- select, repeat
def test_select_keeps_tensors_and_lists_aligned() -> None:
    batch = make_batch([1, 2, 3])
    picked = batch.select([2, 0, 2])
    assert rows_of(picked) == [2, 0, 2]
    assert picked["input_lengths"].tolist() == [3, 1, 3]
    assert picked["input_ids"].tolist() == [[20, 21, 22], [0, -1, -1], [20, 21, 22]]
    assert picked["token_mask"].tolist() == [[1, 1, 1], [1, 0, 0], [1, 1, 1]]


def test_select_by_tensor_mask_and_negative_index() -> None:
    batch = make_batch([1, 2, 3])
    assert rows_of(batch.select(torch.tensor([False, True, True]))) == [1, 2]
    assert rows_of(batch.select(torch.tensor([-1, 0]))) == [2, 0]
    empty = batch.select([])
    assert len(empty) == 0 and empty["input_ids"].shape == (0, 3) and empty["row"] == []


def test_select_bad_indices() -> None:
    batch = make_batch([1, 2, 3])
    with pytest.raises(IndexError, match="3 rows"):
        batch.select([3])
    with pytest.raises(IndexError):
        batch.select([-4])
    with pytest.raises(TypeError, match="bool \\*tensor\\*"):
        batch.select([True, False, True])
    with pytest.raises(ValueError, match="shape \\[3\\]"):
        batch.select(torch.tensor([True, False]))
    with pytest.raises(TypeError, match="integers"):
        batch.select(torch.tensor([0.0]))


def test_repeat_interleave_puts_copies_adjacent() -> None:
    batch = make_batch([1, 2])
    repeated = batch.repeat_interleave(3)
    assert rows_of(repeated) == [0, 0, 0, 1, 1, 1]
    assert repeated["input_lengths"].tolist() == [1, 1, 1, 2, 2, 2]
    assert repeated["input_ids"][3].tolist() == [10, 11]
    assert rows_of(batch.repeat_interleave(1)) == [0, 1]
    with pytest.raises(ValueError, match="n >= 1"):
        batch.repeat_interleave(0)


# --------------------------------------------------------------------------- shard, split
def test_shard_takes_contiguous_rows() -> None:
    batch = make_batch([1, 2, 3, 4, 5, 6])
    assert [rows_of(batch.shard(rank, 3)) for rank in range(3)] == [[0, 1], [2, 3], [4, 5]]
    assert batch.shard(1, 3)["input_lengths"].tolist() == [3, 4]
    assert rows_of(batch.shard(0, 1)) == [0, 1, 2, 3, 4, 5]


def test_shard_errors() -> None:
    batch = make_batch([1, 2, 3, 4, 5])
    with pytest.raises(ValueError, match="cannot shard 5 rows evenly over 2 ranks"):
        batch.shard(0, 2)
    with pytest.raises(ValueError, match="rank"):
        batch.shard(5, 5)
    with pytest.raises(ValueError, match="world_size"):
        batch.shard(0, 0)
    with pytest.raises(ReinforgeError, match="empty batch"):
        Batch().shard(0, 1)


def test_split_sizes_differ_by_at_most_one() -> None:
    batch = make_batch([1, 1, 1, 1, 1, 1, 1])
    assert [rows_of(c) for c in batch.split(3)] == [[0, 1, 2], [3, 4], [5, 6]]
    assert [len(c) for c in batch.split(7)] == [1] * 7
    assert [len(c) for c in batch.split(1)] == [7]
    assert [len(c) for c in make_batch([1, 1]).split(3)] == [1, 1, 0]
    with pytest.raises(ValueError, match="num_chunks"):
        batch.split(0)


# --------------------------------------------------------------------------- microbatches, trim
def test_microbatches_by_size_are_trimmed() -> None:
    batch = make_batch([1, 2, 5, 3, 4])
    micro = batch.microbatches(size=2)
    assert [rows_of(m) for m in micro] == [[0, 1], [2, 3], [4]]
    assert [m["input_ids"].shape[1] for m in micro] == [2, 5, 4]
    assert micro[0]["input_ids"].tolist() == [[0, -1], [10, 11]]
    assert micro[0]["token_mask"].tolist() == [[1, 0], [1, 1]]


def test_microbatches_by_size_without_lengths_are_not_trimmed() -> None:
    batch = Batch(x=torch.zeros(3, 4))
    assert [m["x"].shape for m in batch.microbatches(size=2)] == [(2, 4), (1, 4)]


def test_microbatches_by_token_budget() -> None:
    # lengths 4, 2, 6, 3, 3 with a budget of 12 tokens (rows x longest):
    #   [0]: 1x4=4; +1: 2x4=8 <= 12; +2: 3x6=18 > 12 -> close [0, 1]
    #   [2]: 1x6=6; +3: 2x6=12 <= 12; +4: 3x6=18 > 12 -> close [2, 3]
    #   [4]: 1x3=3 -> [4]
    batch = make_batch([4, 2, 6, 3, 3])
    micro = batch.microbatches(token_budget=12)
    assert [rows_of(m) for m in micro] == [[0, 1], [2, 3], [4]]
    assert [m["input_ids"].shape[1] for m in micro] == [4, 6, 3]


def test_microbatches_token_budget_gives_a_long_row_its_own_group() -> None:
    # lengths 3, 20, 2 with a budget of 10: [0]; +1 -> 2x20 > 10; [1] alone (20 > 10 anyway); +2 -> 2x20 > 10; [2]
    batch = make_batch([3, 20, 2])
    assert [rows_of(m) for m in batch.microbatches(token_budget=10)] == [[0], [1], [2]]
    # a budget that fits everything: 3 rows x 20 = 60
    assert [rows_of(m) for m in batch.microbatches(token_budget=60)] == [[0, 1, 2]]
    assert [rows_of(m) for m in batch.microbatches(token_budget=59)] == [[0, 1], [2]]


def test_microbatches_errors() -> None:
    batch = make_batch([1, 2])
    with pytest.raises(ValueError, match="exactly one"):
        batch.microbatches()
    with pytest.raises(ValueError, match="exactly one"):
        batch.microbatches(size=1, token_budget=4)
    with pytest.raises(ValueError, match="size must be >= 1"):
        batch.microbatches(size=0)
    with pytest.raises(ValueError, match="token_budget must be >= 1"):
        batch.microbatches(token_budget=0)
    with pytest.raises(ReinforgeError, match="empty batch"):
        Batch().microbatches(size=2)
    with pytest.raises(ReinforgeError, match="needs a 'sequence_lengths' column"):
        batch.microbatches(token_budget=4, length_key="sequence_lengths")


def test_trim_cuts_only_per_token_columns() -> None:
    batch = Batch(
        input_ids=torch.tensor([[1, 2, 0, 0, 0], [3, 4, 5, 0, 0]]),  # [2, 5]
        input_lengths=torch.tensor([2, 3]),
        token_mask=torch.tensor([[0, 1, 0, 0, 0], [0, 1, 1, 0, 0]]),  # [2, 5]
        scores=torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]]),  # [2, 4]: not per-token, left alone
        messages=[["a"], ["b"]],
    )
    trimmed = batch.trim()
    assert trimmed["input_ids"].tolist() == [[1, 2, 0], [3, 4, 5]]
    assert trimmed["token_mask"].tolist() == [[0, 1, 0], [0, 1, 1]]
    assert trimmed["scores"].shape == (2, 4)
    assert trimmed["messages"] == [["a"], ["b"]]
    assert batch["input_ids"].shape == (2, 5)  # the source is unchanged
    assert trimmed.trim()["input_ids"].shape == (2, 3)  # already tight: nothing to cut


def test_trim_with_another_length_column_and_bad_lengths() -> None:
    batch = Batch(output_ids=torch.zeros(2, 6), sequence_lengths=[4, 1])
    assert batch.trim("sequence_lengths")["output_ids"].shape == (2, 4)
    with pytest.raises(BatchError, match="negative"):
        Batch(input_ids=torch.zeros(1, 2), input_lengths=[-1]).trim()
    with pytest.raises(BatchError, match="1-D integer"):
        Batch(input_ids=torch.zeros(1, 2), input_lengths=torch.tensor([1.0])).trim()


# --------------------------------------------------------------------------- packing
def test_pack_first_fit_decreasing() -> None:
    # lengths [5, 3, 8, 2, 6], bins of 10; visit longest first: row 2 (8), 4 (6), 0 (5), 1 (3), 3 (2)
    #   row 2 (8) -> new bin A (2 free)
    #   row 4 (6) -> A has 2 free: no -> new bin B (4 free)
    #   row 0 (5) -> A no, B no -> new bin C (5 free)
    #   row 1 (3) -> A no (2), B yes -> B (1 free)
    #   row 3 (2) -> A yes -> A (0 free)
    batch = make_batch([5, 3, 8, 2, 6])
    bins = batch.pack(10)
    assert [b.rows for b in bins] == [[2, 3], [4, 1], [0]]
    assert [b.lengths for b in bins] == [[8, 2], [6, 3], [5]]
    assert [b.num_tokens for b in bins] == [10, 9, 5]
    assert [b.max_seqlen for b in bins] == [8, 6, 5]

    first, second, third = bins
    assert first.input_ids.tolist() == [[20, 21, 22, 23, 24, 25, 26, 27, 30, 31]]
    assert first.position_ids.tolist() == [[0, 1, 2, 3, 4, 5, 6, 7, 0, 1]]
    assert first.cu_seqlens.tolist() == [0, 8, 10]
    assert first.cu_seqlens.dtype == torch.int32
    assert second.input_ids.tolist() == [[40, 41, 42, 43, 44, 45, 10, 11, 12]]
    assert second.position_ids.tolist() == [[0, 1, 2, 3, 4, 5, 0, 1, 2]]
    assert second.cu_seqlens.tolist() == [0, 6, 9]
    assert third.input_ids.tolist() == [[0, 1, 2, 3, 4]]
    assert third.position_ids.tolist() == [[0, 1, 2, 3, 4]]
    assert third.cu_seqlens.tolist() == [0, 5]


def test_unpack_is_the_inverse_of_pack() -> None:
    lengths = [5, 3, 8, 2, 6]
    batch = make_batch(lengths)
    seen = []
    for packed in batch.pack(10):
        for row, tokens in zip(packed.rows, packed.unpack(packed.input_ids)):
            assert tokens.tolist() == batch["input_ids"][row, : lengths[row]].tolist()
            seen.append(row)
        # a per-token output with trailing dims ([1, N, V], e.g. logits) splits the same way
        logits = torch.arange(packed.num_tokens * 2).reshape(1, packed.num_tokens, 2)
        pieces = packed.unpack(logits)
        assert [tuple(p.shape) for p in pieces] == [(n, 2) for n in packed.lengths]
        assert torch.equal(torch.cat(pieces)[None], logits)
    assert sorted(seen) == [0, 1, 2, 3, 4]


def test_unpack_rejects_a_wrong_shape() -> None:
    packed = make_batch([2, 3]).pack(10)[0]
    with pytest.raises(ValueError, match="\\[1, 5, ...\\]"):
        packed.unpack(torch.zeros(1, 4))
    with pytest.raises(ValueError):
        packed.unpack(torch.zeros(5))


def test_pack_oversize_sequence_names_the_row_and_both_numbers() -> None:
    batch = make_batch([3, 12, 4])
    with pytest.raises(ReinforgeError, match="row 1 has 12 tokens .*max_tokens=10"):
        batch.pack(10)


def test_pack_edge_cases() -> None:
    assert Batch.from_sequences([], pad_id=0).pack(4) == []
    exact = make_batch([4, 4]).pack(4)  # a row that exactly fills a bin
    assert [b.rows for b in exact] == [[0], [1]]
    with pytest.raises(ValueError, match="max_tokens must be >= 1"):
        make_batch([1]).pack(0)
    with pytest.raises(BatchError, match="only 2 wide"):
        Batch(input_ids=torch.zeros(1, 2, dtype=torch.long), input_lengths=[3]).pack(8)


def test_packed_batch_is_built_from_its_fields() -> None:
    ids = torch.tensor([[7, 8, 9], [4, 0, 0]])
    packed = PackedBatch.build(ids, rows=[1, 0], lengths=[1, 3])
    assert packed.input_ids.tolist() == [[4, 7, 8, 9]]
    assert packed.position_ids.tolist() == [[0, 0, 1, 2]]
    assert packed.cu_seqlens.tolist() == [0, 1, 4]


# --------------------------------------------------------------------------- concat, to, counts
def test_concat_pads_different_widths() -> None:
    first = Batch(
        input_ids=torch.tensor([[1, 2]]),
        token_mask=torch.tensor([[0, 1]]),
        input_lengths=torch.tensor([2]),
        messages=[["m0"]],
    )
    second = Batch(
        input_ids=torch.tensor([[3, 4, 5], [6, 7, 8]]),
        token_mask=torch.tensor([[0, 1, 1], [0, 0, 1]]),
        input_lengths=torch.tensor([3, 3]),
        messages=[["m1"], ["m2"]],
    )
    joined = Batch.concat([first, second], pad_values={"input_ids": 9})
    assert len(joined) == 3
    assert joined["input_ids"].tolist() == [[1, 2, 9], [3, 4, 5], [6, 7, 8]]
    assert joined["token_mask"].tolist() == [[0, 1, 0], [0, 1, 1], [0, 0, 1]]  # default pad 0
    assert joined["input_lengths"].tolist() == [2, 3, 3]
    assert joined["messages"] == [["m0"], ["m1"], ["m2"]]
    # the narrow batch can come second too
    assert Batch.concat([second, first])["input_ids"].tolist() == [[3, 4, 5], [6, 7, 8], [1, 2, 0]]


def test_concat_edge_cases_and_errors() -> None:
    assert len(Batch.concat([])) == 0
    only = Batch(a=[1, 2])
    assert Batch.concat([Batch(), only])["a"] == [1, 2]  # a batch without columns is skipped
    with pytest.raises(BatchError, match="lacks \\['b'\\]"):
        Batch.concat([Batch(a=[1], b=[2]), Batch(a=[3])])
    with pytest.raises(BatchError, match="tensor in some batches and a list"):
        Batch.concat([Batch(a=[1]), Batch(a=torch.zeros(1))])
    with pytest.raises(BatchError, match="numbers of dims"):
        Batch.concat([Batch(a=torch.zeros(1)), Batch(a=torch.zeros(1, 2))])


def test_to_moves_tensors_and_keeps_lists() -> None:
    batch = Batch(a=torch.zeros(2, dtype=torch.float64), b=["x", "y"])
    moved = batch.to("cpu")
    assert moved["a"].device.type == "cpu" and moved["b"] is batch["b"]


def test_valid_token_count() -> None:
    batch = Batch(token_mask=torch.tensor([[0, 1, 1], [0, 1, 0]]), sample_mask=torch.tensor([1.0, 0.0]))
    assert batch.valid_token_count().item() == 2.0  # row 1 dropped by sample_mask
    del batch["sample_mask"]
    assert batch.valid_token_count().item() == 3.0
    assert batch.valid_token_count().dtype == torch.float32
