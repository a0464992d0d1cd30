"""Built-in dataset readers (local files or hub names through Hugging Face `datasets`)."""

from __future__ import annotations

from reinforge.core.hookspecs import hookimpl
from reinforge.core.registry import Register

_READERS = "reinforge.data.readers"


@hookimpl
def reinforge_register_datasets(register: Register) -> None:
    register(
        "arithmetic",
        f"{_READERS}:arithmetic",
        config=f"{_READERS}:ArithmeticDatasetConfig",
        description="generated arithmetic / linear-equation problems with exact answers (offline)",
    )
    register(
        "arithmetic_sft",
        f"{_READERS}:arithmetic_sft",
        config=f"{_READERS}:ArithmeticDatasetConfig",
        description="the arithmetic problems with worked solutions, as SFT conversations (offline)",
    )
    register(
        "arithmetic_preferences",
        f"{_READERS}:arithmetic_preferences",
        config=f"{_READERS}:ArithmeticPreferenceConfig",
        description="synthetic preference pairs: a correct worked answer (chosen) vs a wrong one (rejected)",
    )
    register(
        "sliding_puzzle",
        f"{_READERS}:sliding_puzzle",
        config=f"{_READERS}:SlidingPuzzleDatasetConfig",
        description="3x3 sliding-tile boards scrambled by random legal moves from solved (for the sliding_puzzle environment)",
    )
    register(
        "sft_jsonl",
        f"{_READERS}:sft_jsonl",
        config="reinforge.data.sft_records:SFTFileConfig",
        requires=("datasets",),
        extra="math",
        description="SFT conversations from a JSON/JSONL/Parquet file or hub dataset: `messages` or input/output rows",
    )
    register(
        "preference_jsonl",
        f"{_READERS}:preference_jsonl",
        config="reinforge.data.preference_records:PreferenceFileConfig",
        requires=("datasets",),
        extra="math",
        description="preference pairs from a JSON/JSONL/Parquet file or hub dataset: prompt/chosen/rejected or ranked completions",
    )
    register(
        "helpsteer3",
        f"{_READERS}:helpsteer3",
        config="reinforge.data.preference_records:HelpSteer3Config",
        requires=("datasets",),
        extra="math",
        description="nvidia/HelpSteer3 preference pairs (response1/response2 by overall_preference, ties dropped)",
    )
    for name, what in [
        ("deepscaler", "DeepScaleR-style problem/answer records (agentica-org/DeepScaleR-Preview-Dataset)"),
        ("aime", "AIME-style evaluation sets (HuggingFaceH4/aime_2024 by default)"),
        ("openmathinstruct2", "OpenMathInstruct-2 problem/expected_answer records"),
        ("jsonl", "any JSON/JSONL/Parquet file or hub dataset, with configurable input/output keys"),
    ]:
        register(
            name,
            f"{_READERS}:{name}",
            config="reinforge.data.datasets:DatasetConfig",
            requires=("datasets",),
            extra="math",
            description=what,
        )
