"""The one workload both frameworks run: model folder, prompts in order, G, batch, microbatch, exactly N new tokens.

`prepare` writes everything a side needs into a folder: a copy of the model whose end-of-sequence
token is one it never samples (its pad token, or a stand-in where the pad is the eos), so every
response is exactly `new_tokens` long in both frameworks (equal work, checked afterwards from the
counted tokens), and the problems as JSONL, in the order both sides consume them (no shuffling on
either side).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import attrs

from reinforge.backends.kit import eos_token_ids

SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."
MICRO_BATCH = 16  # rows per training forward/backward pass on both sides: what examples/configs/grpo-arith-cpu.yaml uses


def micro_rows(rows: int, micro_batch: int) -> int:
    """Rows per training pass for a step of `rows`: `micro_batch`, or all rows when there are fewer; rows must be a
    multiple of it (both sides accumulate whole microbatches into one optimizer step)."""
    if micro_batch < 1:
        raise ValueError(f"the microbatch must be at least 1 row, got {micro_batch}")
    micro = min(micro_batch, rows)
    if rows % micro:
        raise ValueError(f"{rows} rows per step (prompts x generations) do not split into microbatches of {micro}")
    return micro


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
    micro_batch: int = MICRO_BATCH  # asked for; `micro_rows` is what both sides run
    system_prompt: str = SYSTEM_PROMPT

    def __attrs_post_init__(self) -> None:
        micro_rows(self.rows, self.micro_batch)  # raises for a step that does not split

    @property
    def rows(self) -> int:
        return self.prompts_per_step * self.generations

    @property
    def micro_rows(self) -> int:
        """Rows per training forward/backward pass, on both sides."""
        return micro_rows(self.rows, self.micro_batch)

    @property
    def accumulation(self) -> int:
        """Microbatches accumulated into the one optimizer step of each step."""
        return self.rows // self.micro_rows

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(attrs.asdict(self), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> Workload:
        return cls(**json.loads(Path(path).read_text()))


def no_eos_copy(model_dir: Path, out: Path) -> int:
    """Copy `model_dir` with an eos the model never samples, in config, generation config and tokenizer.

    That eos is the pad token when the pad is a token of its own (never trained on, so never
    sampled). Where the pad IS the eos (SmolLM2: both `<|im_end|>`, which the model emits to end a
    reply), it is a special token the chat template never writes (`stand_in_eos`). Returns the id.
    """
    shutil.copytree(model_dir, out, dirs_exist_ok=True)
    tokenizer_config = json.loads((out / "tokenizer_config.json").read_text())
    config = json.loads((out / "config.json").read_text())
    pad = tokenizer_config.get("pad_token")
    pad_text = pad["content"] if isinstance(pad, dict) else pad
    if not pad_text:
        raise ValueError(f"{model_dir} has no pad token to stand in for eos")
    pad_id = int(config["pad_token_id"])
    eos_ids = eos_token_ids(str(out), None)  # config.json's and generation_config.json's
    eos_text, eos_id = (pad_text, pad_id) if pad_id not in eos_ids else stand_in_eos(out, tokenizer_config, pad_id)
    tokenizer_config["eos_token"] = eos_text
    (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))
    config["eos_token_id"] = eos_id
    (out / "config.json").write_text(json.dumps(config, indent=2))
    generation = out / "generation_config.json"
    if generation.exists():
        settings = json.loads(generation.read_text())
        settings["eos_token_id"] = eos_id
        generation.write_text(json.dumps(settings, indent=2))
    return eos_id


def stand_in_eos(folder: Path, tokenizer_config: dict[str, Any], pad_id: int) -> tuple[str, int]:
    """The last special added token that the chat template does not write and that is not bos/unk/pad."""
    template = tokenizer_config.get("chat_template") or ""
    if (folder / "chat_template.jinja").exists():
        template += (folder / "chat_template.jinja").read_text()
    named = {tokenizer_config.get(key) for key in ("bos_token", "unk_token", "pad_token")}
    added = json.loads((folder / "tokenizer.json").read_text()).get("added_tokens", [])
    candidates = [
        token for token in added
        if token.get("special") and token["id"] != pad_id and token["content"] not in named and token["content"] not in template
    ]
    if not candidates:
        raise ValueError(f"{folder}: its pad token is its eos and no other special token can stand in for eos")
    return candidates[-1]["content"], int(candidates[-1]["id"])


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
