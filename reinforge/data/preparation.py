"""Records -> the items an algorithm trains on, by the `RecordFormat` it declares.

The composition root calls `prepare_records` for the training and the validation data; the
algorithm receives the items in batches. Overlong items are dropped (or prompts truncated) and
counted in the stats, which the caller reports.
"""

from __future__ import annotations

from typing import Any

from reinforge.core.model_config import ModelConfig
from reinforge.core.records import RecordFormat
from reinforge.core.run_config import DataConfig
from reinforge.data.conversations import encode_conversation, to_messages
from reinforge.data.messages import RowLocation
from reinforge.data.preference_records import to_pair
from reinforge.data.prompts import build_prompt_set


def prepare_records(
    record_format: RecordFormat, records: list[dict[str, Any]], tokenizer: Any, *, data: DataConfig, model: ModelConfig, source: str
) -> tuple[list[Any], dict[str, Any]]:
    """(items, stats) for `record_format`; `source` names the data in error messages."""
    if record_format.kind == "prompts":
        return _prompts(records, tokenizer, data, source)
    if record_format.kind == "conversations":
        return _conversations(records, tokenizer, model.max_total_sequence_length, only_final=record_format.only_final_assistant_turn)
    if record_format.kind == "preference_pairs":
        return _preference_pairs(records, tokenizer, model.max_total_sequence_length, source)
    raise ValueError(f"unknown record format {record_format.kind!r}")


def _prompts(records: list[dict[str, Any]], tokenizer: Any, data: DataConfig, source: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Tokenized prompts (chat template, prompt template, system prompt; overlong ones dropped or truncated)."""
    if not records:
        return [], {}
    return build_prompt_set(data, tokenizer, records, source=source)


def _conversations(
    records: list[dict[str, Any]], tokenizer: Any, limit: int, *, only_final: bool
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Conversations -> token ids and the assistant-token mask; longer than the sequence limit: dropped."""
    items, dropped = [], 0
    for record in records:
        ids, mask = encode_conversation(tokenizer, to_messages(record), only_final=only_final)
        if len(ids) > limit:
            dropped += 1
            continue
        items.append({"input_ids": ids, "mask": mask})
    return items, {"records": len(records), "dropped_overlong": dropped}


def _preference_pairs(
    records: list[dict[str, Any]], tokenizer: Any, limit: int, source: str
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Preference records -> encoded (chosen, rejected) pairs; a pair with a side over the sequence limit is dropped."""
    pairs, dropped = [], 0
    for row, record in enumerate(records):
        sides = to_pair(record, RowLocation(source, row))
        encoded = [encode_conversation(tokenizer, side, only_final=True) for side in sides]
        if max(len(ids) for ids, _ in encoded) > limit:
            dropped += 1
            continue
        pairs.append({"chosen": encoded[0], "rejected": encoded[1]})
    return pairs, {"records": len(records), "dropped_overlong": dropped}
