"""SFT and preference readers on small JSONL/Parquet files written here, and HelpSteer3's row mapping.

Nothing is downloaded: every file is written under tmp_path, and the HelpSteer3 mapping is a pure
function checked on hand-made rows shaped like the dataset card's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import pytest

datasets = pytest.importorskip("datasets")

from reinforge.data.preference_records import to_pair  # noqa: E402
from reinforge.core.errors import ReinforgeError  # noqa: E402
from reinforge.core.registry import Registry  # noqa: E402
from reinforge.data.messages import RowLocation  # noqa: E402
from reinforge.data.preference_records import (  # noqa: E402
    HelpSteer3Config,
    PreferenceFileConfig,
    helpsteer3_pair,
    read_helpsteer3,
    read_preference_records,
)
from reinforge.data.sft_records import SFTFileConfig, read_sft_records  # noqa: E402

USER = {"role": "user", "content": "What is 2 + 2?"}


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


# --- SFT -------------------------------------------------------------------------------------


def test_sft_messages_rows(tmp_path: Path) -> None:
    rows = [{"messages": [{"role": "system", "content": "Be brief."}, USER, assistant("4")], "id": 1}]
    path = write_jsonl(tmp_path / "chat.jsonl", rows)
    records = read_sft_records(SFTFileConfig(path=path, cache_dir=str(tmp_path / "c")))
    assert records == [{"messages": rows[0]["messages"], "index": 0}]


def test_sft_input_output_parquet_with_keys_prompt_file_and_system(tmp_path: Path) -> None:
    path, template = tmp_path / "omi.parquet", tmp_path / "solve.txt"
    template.write_text("Solve: {}")
    datasets.Dataset.from_dict({"problem": ["1 + 1", "2 + 5"], "generated_solution": ["2", "7"]}).to_parquet(str(path))
    config = SFTFileConfig(
        path=str(path),
        input_key="problem",
        output_key="generated_solution",
        prompt_file=str(template),
        system_prompt="You are a calculator.",
        cache_dir=str(tmp_path / "c"),
    )
    records = read_sft_records(config)
    assert records[1]["messages"] == [
        {"role": "system", "content": "You are a calculator."},
        {"role": "user", "content": "Solve: 2 + 5"},
        {"role": "assistant", "content": "7"},
    ]
    math = read_sft_records(attrs.evolve(config, prompt_file="math", system_prompt=None))
    assert math[0]["messages"][0]["content"].startswith("Solve the following math problem") and "1 + 1" in math[0]["messages"][0]["content"]


def test_sft_seed_and_cap_keep_the_file_row_in_errors(tmp_path: Path) -> None:
    rows = [{"input": f"q{i}", "output": f"a{i}"} for i in range(10)]
    rows[7]["output"] = "   "
    path = write_jsonl(tmp_path / "io.jsonl", rows)
    capped = read_sft_records(SFTFileConfig(path=path, max_samples=3, cache_dir=str(tmp_path / "c")))
    assert [r["messages"][0]["content"] for r in capped] == ["q0", "q1", "q2"]
    with pytest.raises(ReinforgeError, match=r"file '.*io.jsonl', row 7 \(counting from 0\), key 'output': the text is empty"):
        read_sft_records(SFTFileConfig(path=path, seed=1, cache_dir=str(tmp_path / "c")))


def test_sft_missing_columns_name_them(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"question": "q", "answer": "a"}])
    with pytest.raises(ReinforgeError, match=r"no column 'messages', 'input', 'output'.*\['question', 'answer'\].*input_key"):
        read_sft_records(SFTFileConfig(path=path, cache_dir=str(tmp_path / "c")))


def test_sft_bad_rows(tmp_path: Path) -> None:
    cases = [
        ([{"messages": [USER]}], "key 'messages': the conversation has no assistant message"),
        ([{"messages": [USER, assistant("")]}], "key 'messages': the assistant response is empty"),
        ([{"messages": [USER, {"role": "robot", "content": "x"}]}], "key 'messages': message 1 is not a"),
        ([{"input": "q", "output": "a"}, {"input": "q"}], "row 1 .*key 'output': the value is missing"),
    ]
    for i, (rows, pattern) in enumerate(cases):
        path = write_jsonl(tmp_path / f"bad{i}.jsonl", rows)
        with pytest.raises(ReinforgeError, match=f"bad{i}.jsonl.*{pattern}"):
            read_sft_records(SFTFileConfig(path=path, cache_dir=str(tmp_path / "c")))


# --- preferences -----------------------------------------------------------------------------


def test_preference_strings_and_message_lists(tmp_path: Path) -> None:
    # One file holds one type per column (Arrow), so strings and message lists go in two files.
    strings = write_jsonl(tmp_path / "strings.jsonl", [{"prompt": "What is 2 + 2?", "chosen": "4", "rejected": 5}])
    lists = write_jsonl(tmp_path / "lists.jsonl", [{"prompt": [USER], "chosen": [assistant("4")], "rejected": [assistant("22")]}])
    (record,) = read_preference_records(PreferenceFileConfig(path=strings, cache_dir=str(tmp_path / "c")))
    assert record == {"prompt": [USER], "chosen": [assistant("4")], "rejected": [assistant("5")], "index": 0}
    (record,) = read_preference_records(PreferenceFileConfig(path=lists, cache_dir=str(tmp_path / "c")))
    assert record == {"prompt": [USER], "chosen": [assistant("4")], "rejected": [assistant("22")], "index": 0}


def test_preference_whole_conversations_like_tulu3(tmp_path: Path) -> None:
    """Tulu-3's preference mixture stores the prompt as text and each response as the whole conversation."""
    rows = [{"id": "a", "prompt": USER["content"] + " ", "chosen": [USER, assistant("4")], "rejected": [USER, assistant("5")]}]
    path = write_jsonl(tmp_path / "tulu.jsonl", rows)
    (record,) = read_preference_records(PreferenceFileConfig(path=path, cache_dir=str(tmp_path / "c")))
    assert record["prompt"] == [USER] and record["chosen"] == [assistant("4")] and record["rejected"] == [assistant("5")]
    # Without a prompt column the responses' shared leading messages are the prompt.
    no_prompt = write_jsonl(tmp_path / "conversations.jsonl", [{"chosen": [USER, assistant("4")], "rejected": [USER, assistant("5")]}])
    (record,) = read_preference_records(PreferenceFileConfig(path=no_prompt, cache_dir=str(tmp_path / "c")))
    assert record["prompt"] == [USER] and record["chosen"] == [assistant("4")]


def test_preference_ranked_completions_parquet_with_keys(tmp_path: Path) -> None:
    path = tmp_path / "ranked.parquet"
    datasets.Dataset.from_list(
        [{"context": "Q?", "completions": [{"rank": 1, "completion": "ok"}, {"rank": 0, "completion": "good"}, {"rank": 2, "completion": "bad"}]}]
    ).to_parquet(str(path))
    config = PreferenceFileConfig(path=str(path), prompt_key="context", cache_dir=str(tmp_path / "c"))
    (record,) = read_preference_records(config)
    assert record["prompt"] == [{"role": "user", "content": "Q?"}]
    assert record["chosen"] == [assistant("good")] and record["rejected"] == [assistant("bad")]


def test_preference_custom_keys(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "k.jsonl", [{"question": "Q?", "better": "yes", "worse": "no"}])
    config = PreferenceFileConfig(path=path, prompt_key="question", chosen_key="better", rejected_key="worse", cache_dir=str(tmp_path / "c"))
    (record,) = read_preference_records(config)
    assert record["chosen"] == [assistant("yes")] and record["rejected"] == [assistant("no")]


def test_preference_bad_rows(tmp_path: Path) -> None:
    good = {"prompt": "Q?", "chosen": "a", "rejected": "b"}
    cases = [
        ({"prompt": "Q?", "chosen": "a", "rejected": None}, "key 'rejected': the value is missing"),
        ({"prompt": "Q?", "chosen": " ", "rejected": "b"}, "key 'chosen': the text is empty"),
        ({"prompt": "Q?", "chosen": "same", "rejected": "same"}, "key 'rejected': the rejected response is the same as the chosen one"),
        ({"prompt": None, "chosen": "a", "rejected": "b"}, "key 'prompt': the prompt is missing"),
    ]
    for i, (bad, pattern) in enumerate(cases):
        path = write_jsonl(tmp_path / f"bad{i}.jsonl", [good, bad])
        with pytest.raises(ReinforgeError, match=rf"file '.*bad{i}.jsonl', row 1 \(counting from 0\), {pattern}"):
            read_preference_records(PreferenceFileConfig(path=path, cache_dir=str(tmp_path / "c")))


def test_preference_conversations_with_different_prompts() -> None:
    other = {"role": "user", "content": "What is 3 + 3?"}
    with pytest.raises(ReinforgeError, match=r"row 2 .*key 'chosen': the chosen and rejected conversations do not start with the same prompt"):
        to_pair({"chosen": [USER, assistant("4")], "rejected": [other, assistant("6")]}, RowLocation("file 'p.jsonl'", 2))


def test_preference_bad_ranked_rows() -> None:
    where = RowLocation("file 'r.jsonl'", 4)
    with pytest.raises(ReinforgeError, match=r"row 4 .*key 'completions': expected a list of at least two"):
        to_pair({"context": "Q?", "completions": [{"rank": 0, "completion": "only"}]}, where)
    with pytest.raises(ReinforgeError, match=r"key 'completions': every completion has rank 1"):
        to_pair({"context": "Q?", "completions": [{"rank": 1, "completion": "a"}, {"rank": 1, "completion": "b"}]}, where)
    with pytest.raises(ReinforgeError, match=r"key 'completions\[rank 0\]': the text is empty"):
        to_pair({"context": "Q?", "completions": [{"rank": 0, "completion": ""}, {"rank": 1, "completion": "b"}]}, where)


def test_preference_missing_columns_name_them(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "q", "good": "a", "bad": "b"}])
    with pytest.raises(ReinforgeError, match=r"'.*d.jsonl' has no column 'chosen', 'rejected'; its columns are \['prompt', 'good', 'bad'\].*chosen_key"):
        read_preference_records(PreferenceFileConfig(path=path, cache_dir=str(tmp_path / "c")))


# --- HelpSteer3 ------------------------------------------------------------------------------

CONTEXT = [{"role": "user", "content": "Write a haiku."}, assistant("Which topic?"), {"role": "user", "content": "Rain."}]


def helpsteer3_row(preference: int, **changes: Any) -> dict[str, Any]:
    row = {
        "domain": "general",
        "language": "english",
        "context": CONTEXT,
        "response1": "Soft rain on the roof",
        "response2": "rain",
        "overall_preference": preference,
        "individual_preference": [{"score": preference, "reasoning": "...", "feedback1": "...", "feedback2": "..."}],
    }
    return {**row, **changes}


def test_helpsteer3_sign_picks_the_better_response_and_ties_drop() -> None:
    where = RowLocation("dataset 'nvidia/HelpSteer3'", 0)
    first_better = helpsteer3_pair(helpsteer3_row(-2), where)
    assert first_better == {"prompt": CONTEXT, "chosen": [assistant("Soft rain on the roof")], "rejected": [assistant("rain")]}
    second_better = helpsteer3_pair(helpsteer3_row(3), where)
    assert second_better["chosen"] == [assistant("rain")] and second_better["rejected"] == [assistant("Soft rain on the roof")]
    assert helpsteer3_pair(helpsteer3_row(0), where) is None


def test_helpsteer3_bad_rows_name_its_columns() -> None:
    where = RowLocation("dataset 'nvidia/HelpSteer3'", 9)
    with pytest.raises(ReinforgeError, match=r"row 9 .*key 'overall_preference': expected an integer in -3..3, got 5"):
        helpsteer3_pair(helpsteer3_row(5), where)
    with pytest.raises(ReinforgeError, match=r"key 'response2': the text is empty"):
        helpsteer3_pair(helpsteer3_row(1, response2=""), where)
    with pytest.raises(ReinforgeError, match=r"key 'context': the prompt is missing"):
        helpsteer3_pair(helpsteer3_row(1, context=None), where)
    with pytest.raises(ReinforgeError, match=r"key 'response1': the rejected response is the same"):
        helpsteer3_pair(helpsteer3_row(1, response1="rain"), where)


def test_helpsteer3_reader_on_a_local_copy(tmp_path: Path) -> None:
    rows = [helpsteer3_row(-1), helpsteer3_row(0), helpsteer3_row(2)]
    path = write_jsonl(tmp_path / "hs3.jsonl", rows)
    records = read_helpsteer3(HelpSteer3Config(path=path, subset=None, cache_dir=str(tmp_path / "c")))
    assert [r["index"] for r in records] == [0, 1]  # the tie is dropped
    assert records[0]["chosen"] == [assistant("Soft rain on the roof")] and records[1]["chosen"] == [assistant("rain")]


def test_readers_are_registered() -> None:
    registry = Registry.create()
    names = {"sft_jsonl", "preference_jsonl", "helpsteer3"}
    assert names <= set(registry.names("dataset"))


# --- synthetic arithmetic preferences ----------------------------------------------------------


def test_arithmetic_preferences_rejected_answers_are_wrong_by_the_configured_amount() -> None:
    import re

    from reinforge.data.readers import ArithmeticPreferenceConfig, arithmetic_preferences

    def offsets(config: ArithmeticPreferenceConfig) -> list[int]:
        pairs = arithmetic_preferences(config)
        boxed = [(re.search(r"boxed\{(-?\d+)\}", p["chosen"]), re.search(r"boxed\{(-?\d+)\}", p["rejected"])) for p in pairs]
        # the same worked solution up to its result: "7 + 12 = 19. ..." vs "7 + 12 = 17. ..."
        assert all(p["rejected"].split(" = ")[0] == p["chosen"].split(" = ")[0] for p in pairs)
        assert all(f"= {r.group(1)}. The answer is" in p["rejected"] for p, (_, r) in zip(pairs, boxed))
        return [int(r.group(1)) - int(c.group(1)) for c, r in boxed]

    near = offsets(ArithmeticPreferenceConfig(num_samples=200))
    assert {abs(d) for d in near} == {1, 2, 3} and min(near) < 0 < max(near)
    far = offsets(ArithmeticPreferenceConfig(num_samples=200, wrong_by=(10, 30)))
    assert all(10 <= abs(d) <= 30 for d in far)
    with pytest.raises(ValueError, match=r"wrong_by must be \[low, high\]"):
        ArithmeticPreferenceConfig(wrong_by=(0, 3))
