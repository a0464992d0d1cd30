"""Group collection (dynamic sampling's loop) and evaluation, on a scripted collector.

The collector answers each prompt with rewards the test chose, so the loop's bookkeeping (rounds,
what is kept, how the stream is consumed, chunk seeds, metric arithmetic) is checked by hand. The
same functions run end to end with the hf generator and real environments in
tests/integration/test_grpo_cpu.py (dynamic sampling) and the GRPO validation tests.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from reinforge.core.batch import Batch
from reinforge.core.sampling import SamplingParams
from reinforge.rollouts.evaluation import evaluate
from reinforge.rollouts.groups import collect_groups
from reinforge.rollouts.turns import RolloutResult


class ScriptedCollector:
    """Rollouts whose reward for sample j of prompt p is `rewards[p][j]` (cycled); records every call."""

    def __init__(self, rewards: dict[str, list[float]], *, env_metrics: dict[str, float] | None = None,
                 answers: dict[str, str] | None = None) -> None:
        self.rewards, self.env_metrics, self.answers = rewards, env_metrics or {}, answers or {}
        self.calls: list[tuple[list[str], SamplingParams, int]] = []

    def collect(self, prompts, sampling, *, max_turns=1):
        names = [p["metadata"]["problem"] for p in prompts]
        self.calls.append((names, sampling, max_turns))
        seen: dict[str, int] = {}
        rewards = []
        for name in names:
            j = seen.get(name, 0)
            seen[name] = j + 1
            rewards.append(self.rewards[name][j % len(self.rewards[name])])
        batch = Batch.from_sequences([[1, 2, 3]] * len(names), pad_id=0)
        batch["token_mask"] = torch.tensor([[0.0, 1.0, float(i % 2)] for i in range(len(names))])  # 1 or 2 tokens
        batch["truncated"] = torch.tensor([i % 3 == 0 for i in range(len(names))])
        batch["metadata"] = [p["metadata"] for p in prompts]
        return RolloutResult(
            batch=batch,
            rewards=torch.tensor(rewards),
            responses=[f"reply {n} " + "x" * 70 + f" end{i}" for i, n in enumerate(names)],
            env_metrics=dict(self.env_metrics),
            turns=[1] * len(names),
            info=[{"extracted_answer": self.answers[n]} if n in self.answers else {} for n in names],
            correct=torch.tensor(rewards) >= 1.0,
        )


def prompt(name: str) -> dict:
    return {"metadata": {"problem": name, "answer": f"gold-{name}"}}


def stream(*batches: list[str]):
    return iter([[prompt(n) for n in batch] for batch in batches])


def sampling_of(round_: int) -> SamplingParams:
    return SamplingParams(seed=100 + round_, max_new_tokens=4)


def has_variance(result: RolloutResult, group: int = 2) -> torch.Tensor:  # [N] bool, whole groups alike
    r = result.rewards.view(-1, group)
    return (r.max(dim=1).values > r.min(dim=1).values).repeat_interleave(group)


def test_without_a_predicate_one_batch_is_rolled_out_as_it_is():
    collector = ScriptedCollector({"a": [0.0, 1.0], "b": [1.0]})
    prompts = stream(["a", "b"], ["c", "d"])
    got = collect_groups(collector, prompts, 2, wanted=4, sampling=sampling_of, max_rounds=5, max_turns=3)
    assert got.rounds == 1 and got.result.rewards.tolist() == [0.0, 1.0, 1.0, 1.0]
    assert collector.calls == [(["a", "a", "b", "b"], sampling_of(0), 3)]
    assert [p["metadata"]["problem"] for p in next(prompts)] == ["c", "d"]  # one batch drawn, no more


def test_groups_without_variance_are_dropped_and_more_prompts_drawn_until_enough_are_kept():
    # round 0: a varies, b does not (keep 2 rows); round 1: c and d vary (keep 4 rows) -> 6 >= 4 wanted, cut to 4
    collector = ScriptedCollector({"a": [0.0, 1.0], "b": [1.0], "c": [1.0, 0.0], "d": [0.5, 0.0], "e": [0.0, 1.0]})
    prompts = stream(["a", "b"], ["c", "d"], ["e", "f"])
    got = collect_groups(collector, prompts, 2, wanted=4, sampling=sampling_of, keep=has_variance, max_rounds=5)
    assert got.rounds == 2
    assert [m["problem"] for m in got.result.batch["metadata"]] == ["a", "a", "c", "c"]
    assert got.result.rewards.tolist() == [0.0, 1.0, 1.0, 0.0]
    assert [call[1].seed for call in collector.calls] == [100, 101]  # each round its own seed
    assert [p["metadata"]["problem"] for p in next(prompts)] == ["e", "f"]  # consumed exactly what was rolled out


def test_collection_gives_up_after_the_round_limit_with_what_it_kept():
    collector = ScriptedCollector({name: [1.0] for name in "abcdef"} | {"c": [0.0, 1.0]})
    got = collect_groups(collector, stream(["a", "b"], ["c", "d"], ["e", "f"]), 2, wanted=4, sampling=sampling_of,
                         keep=has_variance, max_rounds=3)
    assert got.rounds == 3 and [m["problem"] for m in got.result.batch["metadata"]] == ["c", "c"]


def test_kept_rows_are_cut_to_whole_groups():
    collector = ScriptedCollector({"a": [0.0, 1.0], "b": [1.0, 0.0]})
    got = collect_groups(collector, stream(["a", "b"]), 2, wanted=3, sampling=sampling_of, keep=has_variance)
    assert len(got.result.rewards) == 2  # 3 wanted is one and a half groups: one whole group


def test_evaluation_chunks_seeds_and_scores_by_hand():
    # 3 prompts x 2 samples, 2 prompts per chunk -> chunks start at prompts 0 and 2
    collector = ScriptedCollector(
        {"a": [1.0, 0.0], "b": [0.0, 0.0], "c": [1.0, 1.0]},
        env_metrics={"unboxed": 1.0, "mean_score": 0.5},
        answers={"c": "9"},
    )
    result = evaluate(collector, [prompt(n) for n in "abc"], 2, lambda start: SamplingParams(seed=start),
                      chunk_size=2, max_turns=2, summed_metrics=("unboxed",))
    assert [(names, call.seed, turns) for names, call, turns in collector.calls] == [
        (["a", "a", "b", "b"], 0, 2), (["c", "c"], 2, 2)
    ]
    assert result.correct == [True, False, False, False, True, True]
    assert result.accuracy == pytest.approx(3 / 6)
    assert result.avg_at_n() == pytest.approx((0.5 + 0.0 + 1.0) / 3)
    # pass@1 of (1 right of 2), (0 of 2), (2 of 2) = (0.5 + 0 + 1) / 3; pass@2 = (1 + 0 + 1) / 3
    assert result.pass_at(1) == pytest.approx(0.5) and result.pass_at(2) == pytest.approx(2 / 3)
    name, cons = result.cons_at(1)
    assert name == "cons@1" and cons == pytest.approx(result.avg_at_n())
    # counts add up over chunks (1 + 1); means are weighted by rows: (0.5 * 4 + 0.5 * 2) / 6
    assert result.env_metrics == {"unboxed": 2.0, "mean_score": pytest.approx(0.5)}
    assert result.answers[4:] == ["9", "9"]  # the environment's extracted answer when it gives one...
    assert result.answers[2] == result.samples[2]["response"].strip()[-64:]  # ...else the reply's last 64 characters
    assert result.samples[4] == {"problem": "c", "answer": "gold-c", "response": result.samples[4]["response"],
                                 "prediction": "9", "reward": 1.0}
    assert result.response_lengths.tolist() == [1.0, 2.0, 1.0, 2.0, 1.0, 2.0]
    assert result.truncated.tolist() == [True, False, False, True, True, False]
    assert result.num_prompts == 3 and not math.isnan(result.rewards.mean())


def test_evaluation_scores_a_multi_turn_sample_by_the_episode_reward_training_uses():
    # grpo.multi_turn_reward: last trains on the last turn's reward; validation reports the same number
    class TwoTurns(ScriptedCollector):
        def collect(self, prompts, sampling, *, max_turns=1):
            result = super().collect(prompts, sampling, max_turns=max_turns)
            result.last_rewards = result.rewards - 0.25  # e.g. a -0.25 penalty on an earlier turn, not on the last
            return result

    collector = TwoTurns({"a": [1.25, 0.25]})
    run = lambda how: evaluate(collector, [prompt("a")], 2, lambda start: SamplingParams(seed=start), chunk_size=1,
                               max_turns=2, episode_reward=how)  # noqa: E731
    assert run("sum").rewards.tolist() == [1.25, 0.25]
    last = run("last")
    assert last.rewards.tolist() == [1.0, 0.0] and [s["reward"] for s in last.samples] == [1.0, 0.0]


def test_evaluation_needs_prompts():
    with pytest.raises(ValueError, match="at least one prompt"):
        evaluate(ScriptedCollector({}), [], 2, lambda start: SamplingParams(), chunk_size=2)


def test_the_chain_grpo_uses_hands_its_own_prompts_first():
    collector = ScriptedCollector({"s": [0.0, 1.0], "a": [1.0], "b": [0.0, 1.0]})
    loader = iter([[prompt("a")], [prompt("b")]])
    got = collect_groups(collector, itertools.chain([[prompt("s")]], loader), 2, wanted=4, sampling=sampling_of,
                         keep=has_variance, max_rounds=3)
    assert [m["problem"] for m in got.result.batch["metadata"]] == ["s", "s", "b", "b"] and got.rounds == 3
