"""The one workload both frameworks run: model folder, prompts in order, G, batch, exactly N new tokens.

`prepare` writes everything a side needs into a folder: a copy of the model whose end-of-sequence
token is its padding token (never sampled, so every response is exactly `new_tokens` long in both
frameworks: equal work, checked afterwards from the counted tokens) and the problems as JSONL, in
the order both sides consume them (no shuffling on either side).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import attrs

SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."


@attrs.define(kw_only=True, frozen=True)
class Workload:
    model_dir: str  # the no-eos copy
    records: str  # JSONL of {"problem", "answer"} in consumption order
    prompts_per_step: int
    generations: int  # G
    new_tokens: int  # N, exactly
    steps: int  # per run, warm-up included
    lr: float = 1e-5
    seed: int = 0
    threads: int = 2
    max_total_sequence_length: int = 256
    system_prompt: str = SYSTEM_PROMPT

    @property
    def rows(self) -> int:
        return self.prompts_per_step * self.generations

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(attrs.asdict(self), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> Workload:
        return cls(**json.loads(Path(path).read_text()))


def no_eos_copy(model_dir: Path, out: Path) -> int:
    """Copy `model_dir` with eos = its pad token in config, generation config and tokenizer; returns that id."""
    shutil.copytree(model_dir, out, dirs_exist_ok=True)
    tokenizer_config = json.loads((out / "tokenizer_config.json").read_text())
    pad = tokenizer_config.get("pad_token")
    pad_text = pad["content"] if isinstance(pad, dict) else pad
    if not pad_text:
        raise ValueError(f"{model_dir} has no pad token to stand in for eos")
    tokenizer_config["eos_token"] = pad_text
    (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))
    config = json.loads((out / "config.json").read_text())
    pad_id = int(config["pad_token_id"])
    config["eos_token_id"] = pad_id
    (out / "config.json").write_text(json.dumps(config, indent=2))
    generation = out / "generation_config.json"
    if generation.exists():
        settings = json.loads(generation.read_text())
        settings["eos_token_id"] = pad_id
        generation.write_text(json.dumps(settings, indent=2))
    return pad_id


def arithmetic_records(count: int, seed: int) -> list[dict[str, Any]]:
    """`count` sums/differences from reinforge's arithmetic task (deterministic for the seed; cycled past 150)."""
    from reinforge.data.arithmetic import make_arithmetic_records

    distinct = make_arithmetic_records(min(count, 150), seed=seed, ops=("+", "-"), max_operand=10)
    return [{"problem": r["problem"], "answer": str(r["answer"])} for r in (distinct * count)[:count]]


def prepare(folder: Path, model_dir: Path, **settings: Any) -> Workload:
    """Write the no-eos model copy and the records for `settings` (Workload's fields) into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    no_eos_copy(model_dir, folder / "model")
    count = settings["prompts_per_step"] * settings["steps"]
    records = arithmetic_records(count, settings.get("seed", 0))
    path = folder / "records.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    workload = Workload(model_dir=str(folder / "model"), records=str(path), **settings)
    workload.save(folder / "workload.json")
    return workload


def read_records(workload: Workload) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(workload.records).read_text().splitlines() if line.strip()]
