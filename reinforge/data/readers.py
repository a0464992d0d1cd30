"""Dataset readers as registered by the built-in `dataset` plugins: each takes its options and
returns records: `{"problem", "answer", ...}` for RL, `{"messages"}` (or problem/solution) for SFT,
`{"prompt", "chosen", "rejected"}` for DPO."""

from __future__ import annotations

from typing import Literal

import attrs
from attrs import validators as v

from reinforge.core.config import doc
from reinforge.core.run_config import check_seed
from reinforge.data.arithmetic import make_arithmetic_records
from reinforge.data.datasets import DatasetConfig, load_records
from reinforge.data.preference_records import HelpSteer3Config, PreferenceFileConfig, read_helpsteer3, read_preference_records
from reinforge.data.sft_records import SFTFileConfig, read_sft_records


@attrs.define(kw_only=True, frozen=True)
class ArithmeticDatasetConfig:
    split: Literal["train", "validation"] = doc("which split; the two never share a problem", default="train")
    # 500: with the default ops (+, -) and max_operand 20 there are 608 distinct problems, 64 of them validation.
    num_samples: int = doc("problems in this split", default=500, validator=v.gt(0))
    num_validation_samples: int = doc("size of the validation split (kept out of the training split)", default=64, validator=v.gt(0))
    seed: int = doc("seed of the training split", default=0, validator=check_seed)
    validation_seed: int = doc("seed of the validation split", default=12345, validator=check_seed)
    ops: tuple[str, ...] = doc("operators: + - * /", default=("+", "-"))
    kinds: tuple[str, ...] = doc("problem kinds: arith ('What is 7 + 12?'), linear ('Solve for x: 3x + 4 = 19')", default=("arith",))
    max_operand: int = doc("largest operand", default=20, validator=v.gt(0))


def arithmetic(options: ArithmeticDatasetConfig | None = None) -> list[dict[str, str]]:
    """Generated arithmetic problems with exact answers; nothing is downloaded."""
    o = options or ArithmeticDatasetConfig()
    common = {"ops": o.ops, "kinds": o.kinds, "max_operand": o.max_operand}
    validation = make_arithmetic_records(o.num_validation_samples, seed=o.validation_seed, **common)
    if o.split == "validation":
        return validation if o.num_samples >= len(validation) else validation[: o.num_samples]
    return make_arithmetic_records(o.num_samples, seed=o.seed, exclude={r["problem"] for r in validation}, **common)


def arithmetic_sft(options: ArithmeticDatasetConfig | None = None) -> list[dict[str, str]]:
    """The arithmetic problems with worked solutions ending in \\boxed{answer}: conversations for SFT."""
    from reinforge.data.arithmetic import worked_solution

    return [{"problem": r["problem"], "solution": worked_solution(r)} for r in arithmetic(options)]


def _offset_range(_: object, attribute: attrs.Attribute, value: tuple[int, int]) -> None:
    if len(value) != 2 or not 1 <= value[0] <= value[1]:
        raise ValueError(f"{attribute.name} must be [low, high] with 1 <= low <= high, got {list(value)}")


@attrs.define(kw_only=True, frozen=True)
class ArithmeticPreferenceConfig(ArithmeticDatasetConfig):
    wrong_by: tuple[int, int] = doc(
        "the rejected answer is the right one plus or minus a random amount in [low, high]: [1, 3] gives near misses "
        "only arithmetic tells apart, [10, 30] answers far out of the problems' range",
        default=(1, 3),
        validator=_offset_range,
    )


def arithmetic_preferences(options: ArithmeticPreferenceConfig | None = None) -> list[dict[str, str]]:
    """Synthetic preference pairs: the worked solution with the right answer vs the same with a wrong one."""
    import random

    from reinforge.data.arithmetic import worked_solution

    o = options or ArithmeticPreferenceConfig()
    rng = random.Random(o.seed + (1 if o.split == "validation" else 0))
    low, high = o.wrong_by
    pairs = []
    for record in arithmetic(o):
        wrong = str(int(record["answer"]) + rng.choice([-1, 1]) * rng.randint(low, high))
        pairs.append({
            "prompt": record["problem"],
            "chosen": worked_solution(record),
            "rejected": worked_solution({**record, "answer": wrong}),
        })
    return pairs


@attrs.define(kw_only=True, frozen=True)
class SlidingPuzzleDatasetConfig:
    split: Literal["train", "validation"] = doc("which split (drawn with its own seed)", default="train")
    num_samples: int = doc("boards in this split", default=200, validator=v.gt(0))
    scramble_depth: int = doc("random legal moves from the solved board (each board is solvable in at most this many)", default=2, validator=v.gt(0))
    size: int = doc("board side (3: the 8-puzzle)", default=3, validator=[v.ge(2), v.le(5)])
    seed: int = doc("seed of the training split", default=0)
    validation_seed: int = doc("seed of the validation split", default=12345)


def sliding_puzzle(options: SlidingPuzzleDatasetConfig | None = None) -> list[dict[str, object]]:
    """Sliding-tile boards scrambled by random legal moves from solved (so all solvable), for the `sliding_puzzle` environment."""
    import random

    from reinforge.environments.sliding_puzzle import puzzle_text, scrambled_board

    o = options or SlidingPuzzleDatasetConfig()
    rng = random.Random(o.validation_seed if o.split == "validation" else o.seed)
    records: list[dict[str, object]] = []
    for index in range(o.num_samples):
        board, solution = scrambled_board(rng, o.scramble_depth, o.size)
        records.append({
            "problem": puzzle_text(board),
            "board": [list(row) for row in board],
            "solution": solution,  # tiles to slide, in order (one way to solve it; shorter ones may exist)
            "scramble_depth": o.scramble_depth,
            "index": index,
        })
    return records


def _preset(kind: str):  # noqa: ANN202 - returns a reader
    def read(options: DatasetConfig | None = None) -> list[dict[str, object]]:
        config = options or DatasetConfig(kind=kind)
        if options is not None and options.kind == "generic" and kind != "generic":
            config = attrs.evolve(options, kind=kind)  # the plugin name chooses the preset
        return load_records(config)

    read.__name__ = kind
    read.__doc__ = f"Records of a {kind} dataset (local file or hub name) through Hugging Face datasets."
    return read


deepscaler = _preset("deepscaler")
aime = _preset("aime")
openmathinstruct2 = _preset("openmathinstruct2")
jsonl = _preset("generic")


def sft_jsonl(options: SFTFileConfig) -> list[dict[str, object]]:
    """SFT conversations (`messages` rows, or input/output rows) from a local file or hub dataset."""
    return read_sft_records(options)


def preference_jsonl(options: PreferenceFileConfig) -> list[dict[str, object]]:
    """Preference pairs (prompt/chosen/rejected rows, or ranked completions) from a local file or hub dataset."""
    return read_preference_records(options)


def helpsteer3(options: HelpSteer3Config | None = None) -> list[dict[str, object]]:
    """nvidia/HelpSteer3 preference pairs (the better of two responses by overall_preference; ties dropped)."""
    return read_helpsteer3(options or HelpSteer3Config())
