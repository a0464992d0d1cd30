"""Evaluation: n samples of every prompt, scored by the environment, summarised as pass@k / avg@k / cons@k.

GRPO's validation and `reinforge eval` both evaluate through `evaluate`, so they chunk, repeat,
seed and score prompts the same way and agree on what a metric means.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Literal

import attrs
import torch

from reinforge.core.sampling import SamplingParams
from reinforge.rollouts.groups import Collector
from reinforge.rollouts.metrics import batch_avg_at_k, batch_cons_at_k, batch_pass_at_k, cons_metric_name


@attrs.frozen
class Evaluation:
    """Every sample of an evaluation, prompt-major (a prompt's `samples_per_prompt` samples adjacent)."""

    samples_per_prompt: int
    correct: list[bool]  # the environment's verdict per sample
    answers: list[str]  # what majority voting compares: info["extracted_answer"], else the reply's last 64 characters
    rewards: torch.Tensor  # [N]
    response_lengths: torch.Tensor  # [N] generated (unmasked) tokens
    truncated: torch.Tensor  # [N] bool
    env_metrics: dict[str, float]  # per-sample means; the environment's counts (`summed_metrics`) summed
    samples: list[dict[str, Any]]  # problem, answer, response, prediction, reward: one per sample

    @property
    def num_prompts(self) -> int:
        return len(self.correct) // self.samples_per_prompt

    @property
    def accuracy(self) -> float:
        """Share of samples judged right."""
        return float(sum(self.correct) / len(self.correct))

    def pass_at(self, k: int) -> float:
        """Unbiased pass@k from the n samples of each prompt, averaged over prompts."""
        return batch_pass_at_k(self.correct, self.samples_per_prompt, k)

    def avg_at_n(self) -> float:
        """Mean correctness of each prompt's n samples, averaged over prompts."""
        return batch_avg_at_k(self.correct, self.samples_per_prompt)

    def cons_at(self, k: int) -> tuple[str, float]:
        """Majority-vote accuracy over k of the n samples: its metric name (`cons@k` or `cons@k_estimate`) and value."""
        return cons_metric_name(k, self.samples_per_prompt), batch_cons_at_k(self.answers, self.correct, self.samples_per_prompt, k)


def evaluate(
    rollouts: Collector,
    prompts: list[dict[str, Any]],
    samples_per_prompt: int,
    sampling: Callable[[int], SamplingParams],
    *,
    chunk_size: int,
    max_turns: int = 1,
    summed_metrics: Iterable[str] = (),
    episode_reward: Literal["sum", "last"] = "sum",
) -> Evaluation:
    """Roll out `samples_per_prompt` samples of each prompt, `chunk_size` prompts per collection.

    `sampling(start)` gives the sampling of the chunk that begins at prompt `start` (its own seed, so
    a chunk samples the same whatever came before). Environment metrics are averaged over samples,
    except the counts the environment names in `summed_metrics` (e.g. answers without a box), which
    add up over the chunks. `episode_reward` is a multi-turn sample's reward: its turns' sum or its last
    turn's (GRPO passes `grpo.multi_turn_reward`, so validation reports what training optimises).
    """
    if not prompts:
        raise ValueError("evaluate needs at least one prompt")
    n = samples_per_prompt
    counts = frozenset(summed_metrics)
    correct: list[bool] = []
    answers: list[str] = []
    rewards, lengths, truncated = [], [], []
    env_sums: dict[str, float] = {}
    samples: list[dict[str, Any]] = []
    for start in range(0, len(prompts), chunk_size):
        part = [p for p in prompts[start : start + chunk_size] for _ in range(n)]
        result = rollouts.collect(part, sampling(start), max_turns=max_turns)
        episode = result.episode_rewards(episode_reward)
        rewards.append(episode)
        lengths.append(result.batch["token_mask"].sum(dim=1))
        truncated.append(result.batch["truncated"].bool())
        for key, value in result.env_metrics.items():  # weighted by rows, averaged below (counts: summed)
            env_sums[key] = env_sums.get(key, 0.0) + (value if key in counts else value * len(part))
        for i, reward in enumerate(episode.tolist()):
            # the Environment contract: info["extracted_answer"] is what the vote compares
            answer = str(result.info[i].get("extracted_answer") or result.responses[i].strip()[-64:])
            correct.append(bool(result.correct[i]))  # the environment's verdict, else reward >= 1
            answers.append(answer)
            metadata = part[i]["metadata"]
            samples.append(
                {"problem": metadata.get("problem", metadata.get("prompt")), "answer": metadata.get("answer"), "response": result.responses[i],
                 "prediction": answer, "reward": reward}
            )
    total = len(correct)
    return Evaluation(
        samples_per_prompt=n,
        correct=correct,
        answers=answers,
        rewards=torch.cat(rewards),
        response_lengths=torch.cat(lengths),
        truncated=torch.cat(truncated),
        env_metrics={k: v if k in counts else v / total for k, v in env_sums.items()},
        samples=samples,
    )
