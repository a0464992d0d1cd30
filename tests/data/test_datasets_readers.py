"""Dataset readers on small files written here, and the hub pass-through with a fake `load_dataset`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

datasets = pytest.importorskip("datasets")

from reinforge.core.errors import ReinforgeError  # noqa: E402
from reinforge.data.datasets import DatasetConfig, load_records  # noqa: E402


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def config(tmp_path: Path, **kwargs: Any) -> DatasetConfig:
    return DatasetConfig(cache_dir=str(tmp_path / "hf-cache"), **kwargs)


def test_deepscaler_jsonl(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "train.jsonl",
        [
            {"problem": "What is 1 + 1?", "answer": "2", "solution": "..."},
            {"problem": "Find x.", "answer": "\\frac{1}{2}", "solution": "..."},
        ],
    )
    records = load_records(config(tmp_path, kind="deepscaler", path=str(path)))
    assert records == [
        {"problem": "What is 1 + 1?", "answer": "2", "index": 0},
        {"problem": "Find x.", "answer": "\\frac{1}{2}", "index": 1},
    ]


def test_aime_json_array_with_integer_answers_repeated(tmp_path: Path) -> None:
    path = tmp_path / "aime.json"
    path.write_text(json.dumps([{"id": 60, "problem": "P1", "answer": 33}, {"id": 61, "problem": "P2", "answer": 204}]))
    records = load_records(config(tmp_path, kind="aime", path=str(path), repeat=3))
    assert [r["answer"] for r in records] == ["33", "204"] * 3
    assert [r["index"] for r in records] == [0, 1] * 3
    records[0]["answer"] = "changed"  # repeats are separate dicts
    assert records[2]["answer"] == "33"


def test_openmathinstruct2_parquet(tmp_path: Path) -> None:
    path = tmp_path / "omi2.parquet"
    datasets.Dataset.from_dict(
        {"problem": ["A", "B"], "generated_solution": ["...", "..."], "expected_answer": ["3", "-1"], "problem_source": ["x", "y"]}
    ).to_parquet(str(path))
    records = load_records(config(tmp_path, kind="openmathinstruct2", path=str(path)))
    assert [(r["problem"], r["answer"]) for r in records] == [("A", "3"), ("B", "-1")]


def test_generic_keys_shuffle_and_cap(tmp_path: Path) -> None:
    rows = [{"question": f"q{i}", "final": i * i} for i in range(20)]
    path = write_jsonl(tmp_path / "custom.jsonl", rows)
    cfg = config(tmp_path, path=str(path), input_key="question", output_key="final", seed=3, max_samples=5)
    records = load_records(cfg)
    assert len(records) == 5 and records == load_records(cfg)
    assert [r["index"] for r in records] == list(range(5))
    assert all(r["answer"] == str(int(r["problem"][1:]) ** 2) for r in records)
    assert [r["problem"] for r in records] != [f"q{i}" for i in range(5)]  # shuffled, not the file's head
    unshuffled = load_records(config(tmp_path, path=str(path), input_key="question", output_key="final", max_samples=5))
    assert [r["problem"] for r in unshuffled] == [f"q{i}" for i in range(5)]


def test_missing_file_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(ReinforgeError, match="nope.jsonl.*does not exist"):
        load_records(config(tmp_path, path=str(missing)))


def test_missing_key_names_it_and_the_columns(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"question": "q", "answer": "1"}])
    with pytest.raises(ReinforgeError, match=r"no column 'problem'.*\['question', 'answer'\].*input_key"):
        load_records(config(tmp_path, path=str(path)))


def test_empty_value_is_reported(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"problem": "q", "answer": "1"}, {"problem": "r", "answer": None}])
    with pytest.raises(ReinforgeError, match="row 1 .*'answer'"):
        load_records(config(tmp_path, path=str(path)))


def test_generic_needs_a_path(tmp_path: Path) -> None:
    with pytest.raises(ReinforgeError, match="needs a `path`"):
        load_records(config(tmp_path))


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="kind"):
        DatasetConfig(kind="deepscalar")
    with pytest.raises(ValueError, match="max_samples"):
        DatasetConfig(max_samples=0)
    with pytest.raises(ValueError, match="repeat"):
        DatasetConfig(repeat=0)


def test_hub_names_pass_through_to_load_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def fake_load_dataset(*args: Any, **kwargs: Any) -> Any:
        calls.append((args, kwargs))
        return datasets.Dataset.from_dict({"problem": ["P"], "question": ["Q"], "answer": [7]})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    aime_2025 = config(tmp_path, kind="aime", path="opencompass/AIME2025", subset="AIME2025-I", split="test", input_key="question")
    assert load_records(aime_2025) == [{"problem": "Q", "answer": "7", "index": 0}]
    assert calls[0][0] == ("opencompass/AIME2025", "AIME2025-I") and calls[0][1]["split"] == "test"

    load_records(config(tmp_path, kind="deepscaler"))  # no path: the preset's hub dataset
    assert calls[1][0] == ("agentica-org/DeepScaleR-Preview-Dataset",) and calls[1][1]["split"] == "train"


def test_unreachable_hub_dataset_is_a_user_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("Couldn't reach 'org/name' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(ReinforgeError, match="could not read dataset 'org/name'.*HF_DATASETS_OFFLINE"):
        load_records(config(tmp_path, path="org/name"))
