"""A plain Python reward function as an `Environment` (single turn).

    def reward(prompt: str, response: str, answer: str, **metadata) -> float:
        return float(answer in response)

`prompt` is the record's `problem` or string `prompt` (else the last user message), `response` the assistant's text,
and every other field of the record (`answer`, `index`, ...) arrives as a keyword argument.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reinforge.core.errors import ReinforgeError
from reinforge.core.interfaces import EnvironmentStep

# Record fields that are not passed as keyword arguments: the two positional ones, and
# bookkeeping the prompt builder adds.
_NOT_METADATA = frozenset({"prompt", "response", "problem", "prompt_truncated"})


class FunctionEnvironment:
    """Scores each conversation with `reward_fn(prompt, response, **metadata) -> float`; done after one turn."""

    def __init__(self, reward_fn: Callable[..., float]) -> None:
        self.reward_fn = reward_fn

    def step(self, conversations: list[list[dict[str, str]]], metadata: list[dict[str, Any]]) -> EnvironmentStep:
        rewards = []
        for conversation, meta in zip(conversations, metadata, strict=True):
            prompt = meta.get("problem", meta.get("prompt"))
            if not isinstance(prompt, str):  # a record whose prompt is a message list: its last user message
                prompt = _last(conversation, "user")
            response = _last(conversation, "assistant")
            extra = {k: v for k, v in meta.items() if k not in _NOT_METADATA}
            value = self.reward_fn(prompt, response, **extra)
            try:
                rewards.append(float(value))
            except (TypeError, ValueError):
                raise ReinforgeError(
                    f"the reward function {getattr(self.reward_fn, '__name__', self.reward_fn)!r} returned "
                    f"{value!r} ({type(value).__name__}); it must return a number"
                ) from None
        n = len(conversations)
        return EnvironmentStep(rewards=rewards, observations=[None] * n, done=[True] * n)

    def shutdown(self) -> None:
        pass


def _last(conversation: list[dict[str, str]], role: str) -> str:
    return next((m["content"] for m in reversed(conversation) if m["role"] == role), "")
