"""The exact-match environment: single turn, binary reward."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import reinforge as rf

_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")


@dataclass(frozen=True)
class ExactMatchConfig:
    case_sensitive: bool = field(default=False, metadata={"doc": "compare answers with case"})
    answer_key: str = field(default="answer", metadata={"doc": "metadata key holding the gold answer"})


class ExactMatchEnvironment:
    def __init__(self, config: ExactMatchConfig | None = None) -> None:
        self.config = config or ExactMatchConfig()

    def final_answer(self, text: str) -> str:
        boxed = _BOXED.findall(text)
        if boxed:
            return boxed[-1].strip()
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return lines[-1] if lines else ""

    def step(self, conversations: list[list[dict[str, str]]], metadata: list[dict[str, Any]]) -> rf.EnvironmentStep:
        rewards, info = [], []
        for conversation, meta in zip(conversations, metadata, strict=True):
            response = "".join(m["content"] for m in conversation if m["role"] == "assistant")
            predicted, gold = self.final_answer(response), str(meta[self.config.answer_key]).strip()
            if not self.config.case_sensitive:
                predicted, gold = predicted.casefold(), gold.casefold()
            rewards.append(1.0 if predicted == gold else 0.0)
            info.append({"prediction": predicted, "extracted_answer": predicted})  # what cons@k votes on
        accuracy = sum(rewards) / len(rewards) if rewards else 0.0
        return rf.EnvironmentStep(
            rewards=rewards,
            observations=[None] * len(rewards),
            done=[True] * len(rewards),
            metrics={"accuracy": accuracy},
            info=info,
            correct=[r == 1.0 for r in rewards],  # the verdict accuracy counts (here the reward says it too)
        )

    def shutdown(self) -> None:
        pass
