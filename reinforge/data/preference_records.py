"""Preference pairs from any file or hub dataset `datasets` reads, and from HelpSteer3.

Every pair comes out as `{"prompt": [...], "chosen": [...], "rejected": [...], "index": i}`:
the prompt messages and each response's messages (usually one assistant message), the shape
`reinforge.algorithms.dpo` turns into two conversations. The row shapes understood:

- `prompt` / `chosen` / `rejected`: the prompt a string or a message list; each response a string
  or a message list. Responses stored as whole conversations (Tulu-3's preference mixture) need no
  prompt column: the messages both share before their first difference are the prompt.
- ranked `completions`: a list of `{"rank": int, "completion": str | messages}` with rank 0 the
  best; the best and the worst become one pair.
- HelpSteer3 (`nvidia/HelpSteer3`, configuration `preference`): `context` messages, `response1`,
  `response2` and `overall_preference` in -3..3 (negative: response 1 is better); ties are dropped.
"""

from __future__ import annotations

from typing import Any

import attrs

from reinforge.core.config import doc
from reinforge.core.run_config import check_seed
from reinforge.data.datasets import open_dataset
from reinforge.data.file_checks import DEFAULT_MAX_ROW_BYTES
from reinforge.data.messages import Message, RowLocation, as_messages, check_response, column_error, select_rows


def _optional_positive(_: Any, attribute: attrs.Attribute, value: int | None) -> None:
    if value is not None and value < 1:
        raise ValueError(f"{attribute.name} must be at least 1 or null, got {value}")


@attrs.define(kw_only=True, frozen=True)
class PreferenceKeys:
    """Which columns of a row hold the prompt and the responses."""

    prompt_key: str = doc("column of the prompt (a string or a message list); for ranked rows e.g. 'context'", default="prompt")
    chosen_key: str = doc("column of the preferred response (a string or a message list)", default="chosen")
    rejected_key: str = doc("column of the other response (a string or a message list)", default="rejected")
    completions_key: str = doc("column of ranked completions [{rank, completion}], used when the data has it", default="completions")


@attrs.define(kw_only=True, frozen=True)
class PreferenceFileConfig(PreferenceKeys):
    """Where preference pairs come from, which columns hold them, and which rows to use."""

    path: str = doc("a local .json/.jsonl/.parquet file, a local dataset folder, or a hub dataset name")
    subset: str | None = doc("hub dataset configuration name (hub datasets only)", default=None)
    split: str = doc("split to read from a hub dataset or folder; a single local file is one split", default="train")
    max_samples: int | None = doc("keep at most this many rows, after shuffling (null: all)", default=None, validator=_optional_positive)
    seed: int | None = doc("shuffle the rows with this seed before max_samples (null: keep the file order)", default=None, validator=check_seed)
    cache_dir: str | None = doc("where `datasets` keeps its Arrow cache (null: its default)", default=None)
    max_row_bytes: int = doc(
        "longest .jsonl line accepted, in bytes; a longer row is an error naming its line", default=DEFAULT_MAX_ROW_BYTES, validator=attrs.validators.ge(1)
    )


@attrs.define(kw_only=True, frozen=True)
class HelpSteer3Config:
    """HelpSteer3's preference configuration from the hub (or a local copy of its files)."""

    path: str = doc("hub name, or a local .jsonl/.parquet file with the same columns", default="nvidia/HelpSteer3")
    subset: str | None = doc("hub configuration holding the preference rows", default="preference")
    split: str = doc("train (about 38 k rows) or validation (about 2 k)", default="train")
    max_samples: int | None = doc("keep at most this many rows, after shuffling (null: all)", default=None, validator=_optional_positive)
    seed: int | None = doc("shuffle the rows with this seed before max_samples (null: keep the file order)", default=None, validator=check_seed)
    cache_dir: str | None = doc("where `datasets` keeps its Arrow cache (null: its default)", default=None)


def preference_pair(row: dict[str, Any], keys: PreferenceKeys, where: RowLocation) -> dict[str, list[Message]]:
    """One row as {prompt, chosen, rejected} message lists; a bad row raises ReinforgeError naming it."""
    if row.get(keys.completions_key) is not None:
        chosen_value, rejected_value, chosen_key, rejected_key = _best_and_worst(row[keys.completions_key], keys.completions_key, where)
    else:
        chosen_value, rejected_value = row.get(keys.chosen_key), row.get(keys.rejected_key)
        chosen_key, rejected_key = keys.chosen_key, keys.rejected_key
    chosen = as_messages(chosen_value, where, chosen_key, role="assistant")
    rejected = as_messages(rejected_value, where, rejected_key, role="assistant")
    if chosen[0]["role"] != "assistant" and rejected[0]["role"] != "assistant":
        # Whole conversations per response (Tulu-3): their shared leading messages are the prompt,
        # whatever a prompt column says (it repeats the first user turn, maybe not character for character).
        shared = _shared_prefix(chosen, rejected)
        if shared == 0:
            raise where.error(chosen_key, "the chosen and rejected conversations do not start with the same prompt", "Fix the row.")
        prompt, chosen, rejected = chosen[:shared], chosen[shared:], rejected[shared:]
    elif row.get(keys.prompt_key) is not None:
        prompt = as_messages(row[keys.prompt_key], where, keys.prompt_key, role="user")
    else:
        raise where.error(
            keys.prompt_key,
            "the prompt is missing (null or absent in this row)",
            "Give every row a prompt, or set `prompt_key` to the column holding it.",
        )
    check_response(chosen, where, chosen_key)
    check_response(rejected, where, rejected_key)
    if chosen == rejected:
        raise where.error(rejected_key, "the rejected response is the same as the chosen one", "A pair with no difference teaches nothing; drop the row.")
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def helpsteer3_pair(row: dict[str, Any], where: RowLocation) -> dict[str, list[Message]] | None:
    """A HelpSteer3 preference row as a pair (None for a tie, overall_preference 0)."""
    preference = row.get("overall_preference")
    if isinstance(preference, bool) or not isinstance(preference, int) or not -3 <= preference <= 3:
        raise where.error("overall_preference", f"expected an integer in -3..3, got {preference!r}", "Is this HelpSteer3's preference data?")
    if preference == 0:
        return None
    better, worse = ("response1", "response2") if preference < 0 else ("response2", "response1")
    return preference_pair(row, PreferenceKeys(prompt_key="context", chosen_key=better, rejected_key=worse), where)


def read_preference_records(config: PreferenceFileConfig) -> list[dict[str, Any]]:
    """The pairs of every row (after shuffling and capping)."""
    dataset = open_dataset(
        config.path, subset=config.subset, split=config.split, cache_dir=config.cache_dir, max_row_bytes=config.max_row_bytes
    )
    columns = list(dataset.column_names)
    if config.completions_key not in columns:
        missing = [k for k in (config.chosen_key, config.rejected_key) if k not in columns]
        if missing:
            raise column_error(
                config.path,
                missing,
                columns,
                "A preference dataset needs chosen and rejected columns (`chosen_key` / `rejected_key`) or a "
                "column of ranked completions (`completions_key`); set those options to the dataset's column names.",
            )
    dataset, rows = select_rows(dataset, seed=config.seed, max_samples=config.max_samples)
    return [
        {**preference_pair(row, config, RowLocation.of(config.path, source_row)), "index": index}
        for index, (source_row, row) in enumerate(zip(rows, dataset))
    ]


def read_helpsteer3(config: HelpSteer3Config) -> list[dict[str, Any]]:
    """HelpSteer3 pairs, ties dropped (so there may be fewer than max_samples)."""
    dataset = open_dataset(config.path, subset=config.subset, split=config.split, cache_dir=config.cache_dir)
    missing = [k for k in ("context", "response1", "response2", "overall_preference") if k not in dataset.column_names]
    if missing:
        raise column_error(config.path, missing, list(dataset.column_names), "Point `path` at HelpSteer3's preference data.")
    dataset, rows = select_rows(dataset, seed=config.seed, max_samples=config.max_samples)
    pairs = (helpsteer3_pair(row, RowLocation.of(config.path, source_row)) for source_row, row in zip(rows, dataset))
    return [{**pair, "index": index} for index, pair in enumerate(p for p in pairs if p is not None)]


def _best_and_worst(completions: Any, key: str, where: RowLocation) -> tuple[Any, Any, str, str]:
    if not isinstance(completions, list) or len(completions) < 2:
        raise where.error(key, f"expected a list of at least two {{rank, completion}} dicts, got {completions!r:.80}", "Drop rows with one completion.")
    for i, item in enumerate(completions):
        if not isinstance(item, dict) or not isinstance(item.get("rank"), int) or "completion" not in item:
            raise where.error(key, f"completion {i} is not a {{rank: int, completion}} dict: {item!r:.80}", "Fix the row.")
    ranked = sorted(completions, key=lambda item: item["rank"])
    if ranked[0]["rank"] == ranked[-1]["rank"]:
        raise where.error(key, f"every completion has rank {ranked[0]['rank']}, so none is preferred", "Drop the row.")
    return ranked[0]["completion"], ranked[-1]["completion"], f"{key}[rank {ranked[0]['rank']}]", f"{key}[rank {ranked[-1]['rank']}]"


def _shared_prefix(a: list[Message], b: list[Message]) -> int:
    """How many leading messages two responses share, leaving at least one message in each."""
    n = 0
    while n < min(len(a), len(b)) - 1 and a[n] == b[n]:
        n += 1
    return n


def to_pair(record: dict[str, Any], where: RowLocation | None = None) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(chosen, rejected) conversations from a prompt/chosen/rejected record or ranked `completions` (best vs worst).

    Prompts and responses may be strings or message lists (see reinforge.data.preference_records);
    a bad record raises ReinforgeError naming `where`.
    """
    keys = _CONTEXT_KEYS if "prompt" not in record and "context" in record else _PROMPT_KEYS
    pair = preference_pair(record, keys, where or RowLocation("preference records", 0))
    return [*pair["prompt"], *pair["chosen"]], [*pair["prompt"], *pair["rejected"]]


# The readers' record keys; ranked records (NeMo-RL's shape) may hold their prompt under `context`.
_PROMPT_KEYS = PreferenceKeys()
_CONTEXT_KEYS = PreferenceKeys(prompt_key="context")
