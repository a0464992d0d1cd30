"""Accuracy counts the environment's own verdict (`EnvironmentStep.correct`), not `reward >= 1`.

With a shaped or partial-credit reward the two disagree: an environment that pays 0.5 for a right
answer and 0.2 for a wrong one had every answer counted wrong before. These tests pin the verdict
through each place accuracy is computed: the rollout driver (one and several turns), the guard
every environment runs behind, GRPO's train and validation metrics, and `reinforge eval`'s math
environment."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

import reinforge as rf
from reinforge.backends.generation.hf.backend import HFGenerationBackend
from reinforge.core.env_guard import EnvGuardConfig, guard_environment
from reinforge.core.errors import ReinforgeError
from reinforge.core.interfaces import EnvironmentStep
from reinforge.core.run_config import PolicyConfig
from reinforge.core.sampling import SamplingParams
from reinforge.environments.math import MathEnvironment, MathEnvironmentConfig
from reinforge.rollouts.turns import run_rollouts


class ParityJudge:
    """Pays 0.5 for a "right" answer and 0.2 for a wrong one; right = the response has an even length.

    Records every verdict it gives, so a test can recompute accuracy on its own.
    """

    summed_metrics = ("answers",)  # a count: validation adds it up over its batches

    def __init__(self, report: bool = True) -> None:
        self.report = report
        self.verdicts: list[bool] = []

    def step(self, conversations, metadata):
        right = [len(c[-1]["content"]) % 2 == 0 for c in conversations]
        self.verdicts.extend(right)
        n = len(conversations)
        return EnvironmentStep(
            rewards=[0.5 if r else 0.2 for r in right],
            observations=[None] * n,
            done=[True] * n,
            metrics={"graded": float(n), "answers": float(n)},
            correct=right if self.report else None,
        )

    def shutdown(self) -> None:
        pass


def _prompts(tokenizer, n: int) -> list[dict]:
    messages = [{"role": "user", "content": "What is 2 + 2?"}]
    ids = list(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"])
    return [{"input_ids": ids, "messages": messages, "metadata": {"answer": "4"}} for _ in range(n)]


def _rollouts(model_dir, environment, n: int = 6, max_turns: int = 1):
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    generation = HFGenerationBackend(PolicyConfig(model_name=str(model_dir), max_total_sequence_length=128))
    return run_rollouts(
        _prompts(tokenizer, n),
        generation=generation,
        environment=environment,
        tokenizer=tokenizer,
        sampling=SamplingParams(temperature=1.0, max_new_tokens=7, seed=0),
        max_total_length=128,
        max_turns=max_turns,
    )


def test_rollouts_carry_the_environments_verdict_not_the_reward(tiny_model_dir):
    judge = ParityJudge()
    result = _rollouts(tiny_model_dir, judge)
    assert result.correct.tolist() == judge.verdicts
    assert result.rewards.tolist() == pytest.approx([0.5 if v else 0.2 for v in judge.verdicts])
    assert not (result.rewards >= 1).any()  # the old rule would have counted every answer wrong


def test_without_a_verdict_a_reward_of_at_least_one_counts_as_right(tiny_model_dir):
    class Threshold:
        def step(self, conversations, metadata):
            rewards = [1.0 if len(c[-1]["content"]) % 2 == 0 else 0.7 for c in conversations]
            return EnvironmentStep(rewards=rewards, observations=[None] * len(rewards), done=[True] * len(rewards))

        def shutdown(self) -> None:
            pass

    result = _rollouts(tiny_model_dir, Threshold())
    assert result.correct.tolist() == [r == 1.0 for r in result.rewards.tolist()]


def test_in_several_turns_the_last_turn_that_judges_decides(tiny_model_dir):
    class Flip:
        """Turn 1 judges (True, False, True); turn 2 judges (False, True, True)."""

        def __init__(self) -> None:
            self.turn = 0

        def step(self, conversations, metadata):
            self.turn += 1
            n = len(conversations)
            first = self.turn == 1
            return EnvironmentStep(
                rewards=[1.0] * n,  # all >= 1: only the verdicts can make a row wrong
                observations=[{"role": "user", "content": "Again."} if first else None] * n,
                done=[not first] * n,
                correct=[True, False, True] if first else [False, True, True],
            )

        def shutdown(self) -> None:
            pass

    class JudgesOnlyFirst(Flip):
        def step(self, conversations, metadata):
            out = super().step(conversations, metadata)
            return out if self.turn == 1 else EnvironmentStep(
                rewards=[0.0] * len(conversations), observations=out.observations, done=out.done
            )

    assert _rollouts(tiny_model_dir, Flip(), n=3, max_turns=2).correct.tolist() == [False, True, True]
    # a later turn that does not judge keeps the earlier verdict (its rewards of 0 do not overrule it)
    assert _rollouts(tiny_model_dir, JudgesOnlyFirst(), n=3, max_turns=2).correct.tolist() == [True, False, True]


def test_the_guard_rejects_a_verdict_list_of_the_wrong_length():
    class Short:
        def step(self, conversations, metadata):
            n = len(conversations)
            return EnvironmentStep(rewards=[0.0] * n, observations=[None] * n, done=[True] * n, correct=[True])

        def shutdown(self) -> None:
            pass

    guarded = guard_environment(Short(), name="short")
    with pytest.raises(ReinforgeError, match=r"environment 'short' \(Short\) returned 1 correct flags for 3 conversations"):
        guarded.step([[{"role": "assistant", "content": "x"}]] * 3, [{}] * 3)


def test_the_guard_keeps_verdicts_when_it_retries_one_by_one_and_a_failed_row_is_wrong():
    class FailsOnBoom:
        def step(self, conversations, metadata):
            if any(c[-1]["content"] == "boom" for c in conversations):
                if len(conversations) == 1:
                    raise RuntimeError("boom")
                raise RuntimeError("batch failed")
            n = len(conversations)
            return EnvironmentStep(rewards=[0.3] * n, observations=[None] * n, done=[True] * n, correct=[True] * n)

        def shutdown(self) -> None:
            pass

    guarded = guard_environment(FailsOnBoom(), name="boom", config=EnvGuardConfig(max_failure_rate=0.5))
    texts = ["a", "boom", "c"]
    result = guarded.step([[{"role": "assistant", "content": t}] for t in texts], [{}] * 3)
    assert result.rewards == [0.3, 0.0, 0.3]
    assert result.correct == [True, False, True]


def test_the_math_environment_judges_verified_matches_only():
    # a generous deadline: a worker's first math-verify import can take seconds on a busy machine
    env = MathEnvironment(MathEnvironmentConfig(num_workers=1, require_boxed=True, verify_timeout=120))
    try:
        replies = ["so \\boxed{4}", "\\boxed{5}", "4", "2 + 2 = \\boxed{2+2}"]
        result = env.step([[{"role": "assistant", "content": r}] for r in replies], [{"answer": "4"}] * 4)
    finally:
        env.shutdown()
    assert result.rewards == [1.0, 0.0, 0.0, 1.0]
    assert result.correct == [True, False, False, True]
    assert [i["extracted_answer"] for i in result.info] == ["4", "5", None, "2+2"]


def test_grpo_train_and_validation_accuracy_are_the_verdicts(tiny_model_dir, tmp_path):
    class Collect:
        def __init__(self) -> None:
            self.rows: list[tuple[int, dict]] = []

        def log(self, metrics, step):
            self.rows.append((step, dict(metrics)))

        def close(self) -> None:
            pass

    judge, sink = ParityJudge(), Collect()
    data = rf.data.arithmetic_problems(num_samples=24, max_operand=10)
    trainer = rf.Trainer(
        algorithm=rf.GRPO(rf.GRPOConfig(num_prompts_per_step=2, num_generations_per_prompt=4, max_val_samples=3,
                                        val_num_generations_per_prompt=2)),
        policy=rf.backends.DTensorTraining(str(tiny_model_dir), lr=1e-4, train_global_batch_size=8,
                                           max_total_sequence_length=96),
        generation=rf.backends.HFGeneration(max_new_tokens=9),
        environment=judge,
        train_data=data[:16],
        val_data=data[16:],
        data=rf.DataConfig(prompt_file=None, max_input_seq_length=64),
        loop=rf.LoopConfig(max_steps=1, val_at_start=True, val_at_end=False, seed=5),
        loggers=[sink],
        log_dir=str(tmp_path / "logs"),
    )
    trainer.fit()
    logged = {step: m for step, m in sink.rows if m}
    val, train = logged[0], logged[1]
    val_verdicts, train_verdicts = judge.verdicts[:6], judge.verdicts[6:14]
    assert len(judge.verdicts) == 14
    assert val["val/accuracy"] == pytest.approx(sum(val_verdicts) / 6)
    assert val["val/reward_mean"] == pytest.approx(sum(0.5 if v else 0.2 for v in val_verdicts) / 6)
    # validation runs in chunks of num_prompts_per_step prompts x 2 samples: 4 rows, then 2; the
    # environment's batch metric is averaged over rows, as in training
    assert val["val/env/graded"] == pytest.approx((4 * 4 + 2 * 2) / 6)
    assert val["val/env/answers"] == 6.0
    assert train["train/accuracy"] == pytest.approx(sum(train_verdicts) / 8)
    pairs = [val_verdicts[i : i + 2] for i in range(0, 6, 2)]
    assert val["val/pass@2"] == pytest.approx(sum(any(p) for p in pairs) / 3)
