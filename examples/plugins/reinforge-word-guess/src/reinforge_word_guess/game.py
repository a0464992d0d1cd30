"""The word-guessing game: environment, feedback rule and dataset (see README.md)."""

from __future__ import annotations

import random
import re
from collections import Counter
from typing import Any, Literal

import attrs
from attrs import validators as v

import reinforge as rf

WORDS = (
    "apple beach bread brick chair chess cloud crane dance dream earth field flame fruit ghost grape green heart "
    "horse house juice knife lemon light money mouse music night ocean paint paper party pizza plant queen radio "
    "river robot salad sheep shirt smile snake space spoon stone storm sugar table tiger toast tooth train water "
    "whale wheel world youth zebra"
).split()
_BOXED = re.compile(r"\\boxed\{\s*([A-Za-z]+)\s*\}")


def feedback(guess: str, secret: str) -> str:
    """One mark per letter: G right place, Y elsewhere in the word (as often as it occurs there), . absent."""
    marks = ["."] * len(guess)
    left = Counter(s for g, s in zip(guess, secret) if g != s)
    for k, (g, s) in enumerate(zip(guess, secret)):
        if g == s:
            marks[k] = "G"
    for k, g in enumerate(guess):
        if marks[k] != "G" and left[g] > 0:
            marks[k] = "Y"
            left[g] -= 1
    return " ".join(marks)


def read_guess(text: str) -> str | None:
    found = _BOXED.findall(text)
    return found[-1].lower() if found else None


@attrs.define(kw_only=True, frozen=True)
class WordGuessConfig:
    solve_reward: float = attrs.field(default=1.0, metadata={"doc": "reward on the turn that guesses the word"})
    letter_credit: float = attrs.field(default=0.2, validator=v.ge(0), metadata={"doc": "reward per turn for the share of green letters (0 = solve or nothing)"})
    invalid_penalty: float = attrs.field(default=0.1, validator=v.ge(0), metadata={"doc": "subtracted on a turn without a readable five-letter guess"})


class WordGuessEnvironment:
    """Stateless: the guesses are read back from the conversation every turn."""

    summed_metrics = ("guesses", "invalid_guesses", "solved")
    observation_roles = ("user",)

    def __init__(self, config: WordGuessConfig | None = None) -> None:
        self.config = config or WordGuessConfig()

    def step(self, conversations: list[list[dict[str, str]]], metadata: list[dict[str, Any]]) -> rf.EnvironmentStep:
        cfg = self.config
        rewards, observations, done, correct, components, info = [], [], [], [], [], []
        invalid = solved_count = 0
        for conversation, meta in zip(conversations, metadata, strict=True):
            secret = str(meta["answer"]).lower()
            guesses = [read_guess(reply) for reply in _episode_replies(conversation, str(meta.get("problem", "")))]
            guess = guesses[-1] if guesses else None
            valid = guess is not None and len(guess) == len(secret)
            solved = valid and guess == secret
            greens = feedback(guess, secret).count("G") / len(secret) if valid else 0.0
            parts = {
                "solved": cfg.solve_reward if solved else 0.0,
                "letters": 0.0 if solved else cfg.letter_credit * greens,
                "invalid": 0.0 if valid else -cfg.invalid_penalty,
            }
            rewards.append(sum(parts.values()))
            components.append(parts)
            done.append(solved)
            correct.append(solved)
            info.append({"extracted_answer": guess or "", "guesses": len(guesses)})
            invalid += not valid
            solved_count += solved
            if solved:
                observations.append(None)
            elif valid:
                observations.append({"role": "user", "content": f"{guess}: {feedback(guess, secret)}\nNext guess?"})
            else:
                observations.append({"role": "user", "content": f"Guess one {len(secret)}-letter word in \\boxed{{}}."})
        return rf.EnvironmentStep(
            rewards=rewards, observations=observations, done=done, correct=correct, info=info, reward_components=components,
            metrics={"guesses": float(len(conversations)), "invalid_guesses": float(invalid), "solved": float(solved_count)},
        )

    def shutdown(self) -> None:
        pass


def _episode_replies(conversation: list[dict[str, str]], problem: str) -> list[str]:
    """The assistant messages after the user message holding the problem (worked examples come before it)."""
    start = next((k for k, m in enumerate(conversation) if m["role"] == "user" and problem and problem in m["content"]), 0)
    return [m["content"] for m in conversation[start + 1 :] if m["role"] == "assistant"]


@attrs.define(kw_only=True, frozen=True)
class WordGuessDatasetConfig:
    split: Literal["train", "validation"] = attrs.field(default="train", metadata={"doc": "validation holds out every fifth word"})
    num_samples: int = attrs.field(default=200, validator=v.gt(0), metadata={"doc": "games in this split (words repeat when it exceeds the word list)"})
    seed: int = attrs.field(default=0, metadata={"doc": "shuffle seed"})


def word_guess_records(options: WordGuessDatasetConfig | None = None) -> list[dict[str, Any]]:
    o = options or WordGuessDatasetConfig()
    words = [w for k, w in enumerate(WORDS) if (k % 5 == 4) == (o.split == "validation")]
    rng = random.Random(o.seed)
    problem = (
        "Guess my secret five-letter word. After each guess I mark every letter: G (right letter, right place), "
        "Y (in the word, elsewhere) or . (not in the word). Answer with one guess in \\boxed{}, e.g. \\boxed{crane}."
    )
    return [{"problem": problem, "answer": rng.choice(words), "index": i} for i in range(o.num_samples)]
