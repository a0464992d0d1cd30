"""Dataset readers: any source Hugging Face `datasets` can read, turned into `{"problem", "answer", "index"}` records.

A reader *kind* is only a preset: which hub dataset to use when no path is given and which
columns hold the problem and the answer. Local JSON, JSONL and Parquet files go through
`datasets.load_dataset("json" | "parquet", data_files=...)`; anything else is passed to
`datasets.load_dataset(name, subset, split=...)` as a hub name (or a local dataset folder),
so a dataset the library can read is never parsed by hand here.

Answers are always strings (AIME sets store them as integers), because the math environment
and majority voting compare text before any parsing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

from reinforge.core.config import doc
from reinforge.core.run_config import check_seed
from reinforge.core.errors import ReinforgeError
from reinforge.data.file_checks import DEFAULT_MAX_ROW_BYTES, check_dataset_file


@attrs.define(kw_only=True, frozen=True)
class ReaderPreset:
    """What a reader kind fills in when the config leaves it out."""

    hub_name: str | None  # the dataset read when `path` is not given (None: a path is required)
    input_key: str  # column holding the problem text
    output_key: str  # column holding the reference answer


PRESETS: dict[str, ReaderPreset] = {
    "deepscaler": ReaderPreset(hub_name="agentica-org/DeepScaleR-Preview-Dataset", input_key="problem", output_key="answer"),
    "aime": ReaderPreset(hub_name="HuggingFaceH4/aime_2024", input_key="problem", output_key="answer"),
    "openmathinstruct2": ReaderPreset(hub_name="nvidia/OpenMathInstruct-2", input_key="problem", output_key="expected_answer"),
    "generic": ReaderPreset(hub_name=None, input_key="problem", output_key="answer"),
}

# File suffix -> the `datasets` builder that reads it.
_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet"}


def _optional_positive(_: Any, attribute: attrs.Attribute, value: int | None) -> None:
    if value is not None and value < 1:
        raise ValueError(f"{attribute.name} must be at least 1 or null, got {value}")


@attrs.define(kw_only=True, frozen=True)
class DatasetConfig:
    """Where problems come from and which of them to use."""

    kind: str = doc(
        f"reader preset: {', '.join(PRESETS)} (sets the default hub dataset and column names)",
        default="generic",
        validator=attrs.validators.in_(tuple(PRESETS)),
    )
    path: str | None = doc(
        "a local .json/.jsonl/.parquet file, a local dataset folder, or a hub dataset name (null: the kind's hub dataset)",
        default=None,
    )
    subset: str | None = doc("hub dataset configuration name, e.g. AIME2025-I (hub datasets only)", default=None)
    split: str = doc("split to read from a hub dataset or folder; a single local file is one split", default="train")
    input_key: str | None = doc("column holding the problem (null: the kind's default)", default=None)
    output_key: str | None = doc("column holding the reference answer (null: the kind's default)", default=None)
    max_samples: int | None = doc("keep at most this many rows, after shuffling (null: all)", default=None, validator=_optional_positive)
    seed: int | None = doc("shuffle the rows with this seed before max_samples (null: keep the file order)", default=None, validator=check_seed)
    repeat: int = doc("repeat the whole list this many times, e.g. 16 for avg@16 on AIME", default=1, validator=attrs.validators.ge(1))
    cache_dir: str | None = doc("where `datasets` keeps its Arrow cache (null: its default, ~/.cache/huggingface)", default=None)
    max_row_bytes: int = doc(
        "longest row accepted (bytes of a .jsonl line, characters of a problem); longer rows are an error naming the row",
        default=DEFAULT_MAX_ROW_BYTES,
        validator=attrs.validators.ge(1),
    )


def load_records(config: DatasetConfig) -> list[dict[str, Any]]:
    """Read, shuffle, cap and repeat; each record is `{"problem": str, "answer": str, "index": int}`.

    `index` is the row's position after shuffling and capping (before repeating), so that the
    repeats of one problem share it (for avg@k and majority voting).
    """
    preset = PRESETS[config.kind]
    input_key = config.input_key or preset.input_key
    output_key = config.output_key or preset.output_key
    source = config.path or preset.hub_name
    if source is None:
        raise ReinforgeError(
            f"the '{config.kind}' dataset reader needs a `path`: a local .json/.jsonl/.parquet file "
            "or a Hugging Face hub dataset name."
        )
    dataset = open_dataset(
        source, subset=config.subset, split=config.split, cache_dir=config.cache_dir, max_row_bytes=config.max_row_bytes
    )
    missing = [key for key in (input_key, output_key) if key not in dataset.column_names]
    if missing:
        raise ReinforgeError(
            f"dataset {source!r} has no column {', '.join(repr(k) for k in missing)}; its columns are "
            f"{dataset.column_names}. Set `input_key` / `output_key` in the dataset config to the columns "
            "holding the problem and the answer."
        )
    if config.seed is not None:
        dataset = dataset.shuffle(seed=config.seed)
    if config.max_samples is not None and config.max_samples < len(dataset):
        dataset = dataset.select(range(config.max_samples))
    dataset = dataset.select_columns([input_key, output_key])

    records: list[dict[str, Any]] = []
    for index, (problem, answer) in enumerate(zip(dataset[input_key], dataset[output_key])):
        if problem is None or answer is None:
            empty = input_key if problem is None else output_key
            raise ReinforgeError(
                f"row {index} of dataset {source!r} has no value in column {empty!r}; clean the data or "
                "point `input_key` / `output_key` at complete columns."
            )
        if len(str(problem)) > config.max_row_bytes:
            raise ReinforgeError(
                f"row {index} of dataset {source!r} has a problem of {len(str(problem)):,} characters, over the "
                f"dataset config's max_row_bytes ({config.max_row_bytes:,}); remove that row or raise max_row_bytes."
            )
        records.append({"problem": str(problem), "answer": str(answer).strip(), "index": index})
    return [dict(record) for _ in range(config.repeat) for record in records]


def open_dataset(
    source: str,
    *,
    subset: str | None = None,
    split: str = "train",
    cache_dir: str | None = None,
    max_row_bytes: int = DEFAULT_MAX_ROW_BYTES,
) -> Any:
    """A `datasets.Dataset` from a local file, a local folder or a hub name; failures become ReinforgeError."""
    import datasets

    local = Path(source).expanduser()
    builder = _BUILDERS.get(local.suffix.lower())
    if builder is not None:
        if local.is_dir():
            raise ReinforgeError(
                f"dataset path {str(local)!r} is a directory, but its name ends in {local.suffix}; name the "
                "data file itself, or rename the folder if it is a saved dataset folder."
            )
        if not local.exists():
            raise ReinforgeError(
                f"dataset file {str(local)!r} does not exist (resolved to {local.resolve()}); check the "
                "dataset `path`, which is relative to the directory you run from."
            )
        check_dataset_file(local, max_row_bytes=max_row_bytes)
        args: tuple[Any, ...] = (builder,)
        kwargs: dict[str, Any] = {"data_files": {"train": str(local)}, "split": "train"}
        what = f"file {str(local)!r}"
    elif local.is_file():  # a local file of a format no reader takes: not a hub name to look up
        raise ReinforgeError(
            f"dataset file {str(local)!r} is a {local.suffix or 'suffix-less'} file; the dataset readers read .json, "
            f".jsonl and .parquet files (or a saved dataset folder). Convert it, e.g. for a CSV: python -c \"import "
            f"pandas as pd; pd.read_csv('{local}').to_json('{local.with_suffix('.jsonl')}', orient='records', "
            "lines=True)\", and set the dataset's `path` (data.dataset_cfg.path) to the new file"
        )
    else:
        name = str(local) if local.is_dir() else source
        args = (name,) if subset is None else (name, subset)
        kwargs = {"split": split}
        what = f"dataset {source!r} (split {split!r}{f', subset {subset!r}' if subset else ''})"
    try:
        return datasets.load_dataset(*args, cache_dir=cache_dir, **kwargs)
    except Exception as exc:  # noqa: BLE001 - an I/O boundary: every failure here is about the source
        hint = (
            " It is not a local file (those must end in .json, .jsonl or .parquet), so it was looked up on "
            "the Hugging Face hub: check the name and split, your network, and HF_DATASETS_OFFLINE / "
            "HF_HUB_OFFLINE (offline, only datasets already in the cache can be read)."
            if builder is None and not local.is_dir()
            else ""
        )
        raise ReinforgeError(f"could not read {what}: {type(exc).__name__}: {exc}.{hint}") from exc
