"""SFT conversations from any file or hub dataset `datasets` reads: chat `messages` rows, or input/output rows.

Every record comes out as `{"messages": [...]}`, the shape `reinforge.algorithms.sft` trains on,
so the algorithm never guesses column names; this reader is where the columns are named.
"""

from __future__ import annotations

from typing import Any

import attrs

from reinforge.core.config import doc
from reinforge.core.run_config import check_seed
from reinforge.data.datasets import open_dataset
from reinforge.data.file_checks import DEFAULT_MAX_ROW_BYTES
from reinforge.data.messages import Message, RowLocation, as_messages, check_response, column_error, select_rows
from reinforge.data.prompts import load_prompt_template


def _optional_positive(_: Any, attribute: attrs.Attribute, value: int | None) -> None:
    if value is not None and value < 1:
        raise ValueError(f"{attribute.name} must be at least 1 or null, got {value}")


@attrs.define(kw_only=True, frozen=True)
class SFTFileConfig:
    """Where SFT conversations come from and which columns hold them."""

    path: str = doc("a local .json/.jsonl/.parquet file, a local dataset folder, or a hub dataset name")
    subset: str | None = doc("hub dataset configuration name (hub datasets only)", default=None)
    split: str = doc("split to read from a hub dataset or folder; a single local file is one split", default="train")
    messages_key: str = doc("column of chat message lists; used when the data has it", default="messages")
    input_key: str = doc("column of the user's text, when there is no messages column", default="input")
    output_key: str = doc("column of the assistant's text, when there is no messages column", default="output")
    prompt_file: str | None = doc(
        "template for the input of input/output rows: cot, math, or a text file with one {} (null: the input as it is)",
        default=None,
    )
    system_prompt: str | None = doc("system message put before input/output rows (null: none)", default=None)
    max_samples: int | None = doc("keep at most this many rows, after shuffling (null: all)", default=None, validator=_optional_positive)
    seed: int | None = doc("shuffle the rows with this seed before max_samples (null: keep the file order)", default=None, validator=check_seed)
    cache_dir: str | None = doc("where `datasets` keeps its Arrow cache (null: its default)", default=None)
    max_row_bytes: int = doc(
        "longest .jsonl line accepted, in bytes; a longer row is an error naming its line", default=DEFAULT_MAX_ROW_BYTES, validator=attrs.validators.ge(1)
    )


def sft_conversation(row: dict[str, Any], config: SFTFileConfig, where: RowLocation, template: str | None = None) -> list[Message]:
    """One row as a conversation ending in an assistant turn; a bad row raises ReinforgeError naming it.

    `template` (the text of config.prompt_file) wraps the input of input/output rows.
    """
    if row.get(config.messages_key) is not None or config.input_key not in row:
        if isinstance(row.get(config.messages_key), str):  # read as one user message it would "lack an assistant"
            raise where.error(
                config.messages_key,
                "the value is a plain string, not a list of {role, content} messages",
                f"An SFT conversation is a list like [{{\"role\": \"user\", \"content\": \"...\"}}, {{\"role\": \"assistant\", "
                f"\"content\": \"...\"}}]; for plain-text rows use an input and an output column (input_key / output_key, "
                f"now {config.input_key!r} / {config.output_key!r}) and set messages_key to a column the data does not have.",
            )
        messages = as_messages(row.get(config.messages_key), where, config.messages_key, role="user")
        if not any(m["role"] == "assistant" for m in messages):
            raise where.error(config.messages_key, "the conversation has no assistant message", "SFT trains on assistant turns; drop the row.")
        return check_response(messages, where, config.messages_key)
    user = as_messages(row.get(config.input_key), where, config.input_key, role="user")
    if template is not None and len(user) == 1:
        user = [{"role": "user", "content": template.format(user[0]["content"])}]
    response = check_response(as_messages(row.get(config.output_key), where, config.output_key, role="assistant"), where, config.output_key)
    system = [{"role": "system", "content": config.system_prompt}] if config.system_prompt else []
    return [*system, *user, *response]


def read_sft_records(config: SFTFileConfig) -> list[dict[str, Any]]:
    """`{"messages": [...], "index": i}` for every row (after shuffling and capping)."""
    dataset = open_dataset(
        config.path, subset=config.subset, split=config.split, cache_dir=config.cache_dir, max_row_bytes=config.max_row_bytes
    )
    columns = list(dataset.column_names)
    if config.messages_key not in columns and not {config.input_key, config.output_key} <= set(columns):
        missing = [k for k in (config.input_key, config.output_key) if k not in columns]
        raise column_error(
            config.path,
            [config.messages_key, *missing],
            columns,
            "An SFT dataset needs a column of chat messages (`messages_key`) or an input and an output column "
            "(`input_key` / `output_key`); set those options to the dataset's column names.",
        )
    dataset, rows = select_rows(dataset, seed=config.seed, max_samples=config.max_samples)
    template = load_prompt_template(config.prompt_file)
    return [
        {"messages": sft_conversation(row, config, RowLocation.of(config.path, source_row), template), "index": index}
        for index, (source_row, row) in enumerate(zip(rows, dataset))
    ]
