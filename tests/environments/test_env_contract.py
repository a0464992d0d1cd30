"""The multi-turn additions to the environment contract, as the guard checks them, and a failure mid-episode."""

from __future__ import annotations

import math

import pytest

from reinforge.core.env_guard import EnvGuardConfig, guard_environment
from reinforge.core.errors import ReinforgeError
from reinforge.core.interfaces import EnvironmentStep
from reinforge.core.sampling import SamplingParams
from reinforge.rollouts.turns import run_rollouts
from reinforge.testing import build_tokenizer
from tests.rollouts.test_turn_tokens import IM_END, PROMPT, ScriptedGeneration, ids


class Returns:
    def __init__(self, **fields):
        self.fields = fields

    def step(self, conversations, metadata):
        n = len(conversations)
        base = {"rewards": [0.0] * n, "observations": [None] * n, "done": [True] * n}
        return EnvironmentStep(**{**base, **self.fields})

    def shutdown(self) -> None:
        pass


CONVERSATIONS = [[{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]] * 2


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"next_stop_strings": [["</x>"]]}, r"returned 1 stop-string sets for 2 conversations"),
        ({"reward_components": [{"a": 1.0}]}, r"returned 1 reward-component mappings for 2 conversations"),
        ({"reward_components": [{"a": math.nan}, {"a": 1.0}]}, r"reward component 'a': nan for conversation 0"),
        ({"reward_components": [{"a": "high"}, {"a": 1.0}]}, r"must be named by strings and be finite numbers"),
        ({"reward_components": [[1.0], {"a": 1.0}]}, r"must be a mapping of names to numbers"),
        ({"observations": ["Try again.", None], "done": [False, True]}, r"observation 'Try again.' for conversation 0"),
        ({"observations": [{"role": "user"}, None], "done": [False, True]}, r"\{'role': \.\.\., 'content': \.\.\.\} mapping"),
        ({"next_stop_strings": ["</x>", None]}, r"next_stop_strings '</x>' for conversation 0; each entry must be None"),
    ],
)
def test_malformed_answers_stop_the_run_naming_the_environment(fields, message):
    guarded = guard_environment(Returns(**fields), name="my_env")
    with pytest.raises(ReinforgeError, match=message) as caught:
        guarded.step(CONVERSATIONS, [{}, {}])
    assert "environment 'my_env' (Returns)" in str(caught.value)


class FailsOnSecondTurn:
    """Row 1 raises on its second turn; the others go on. First turns earn 0.25."""

    def step(self, conversations, metadata):
        n = len(conversations)
        turn = sum(m["role"] == "assistant" for m in conversations[0])
        if turn == 2 and any(m["index"] == 1 for m in metadata):
            raise RuntimeError("the game server is down")
        if turn == 1:
            return EnvironmentStep(rewards=[0.25] * n, observations=[{"role": "user", "content": "again"}] * n, done=[False] * n)
        return EnvironmentStep(rewards=[1.0] * n, observations=[None] * n, done=[True] * n, correct=[True] * n)

    def shutdown(self) -> None:
        pass


def test_a_conversation_that_fails_mid_episode_scores_zero_and_the_rest_train():
    tok = build_tokenizer()
    prompt_ids = list(tok.apply_chat_template(PROMPT, add_generation_prompt=True, tokenize=True, return_dict=False))
    reply = ids(tok, "4") + [IM_END]
    generation = ScriptedGeneration([(reply, False)] * 2)
    env = guard_environment(FailsOnSecondTurn(), name="flaky", config=EnvGuardConfig(max_failure_rate=0.5))
    result = run_rollouts(
        [{"input_ids": prompt_ids, "messages": list(PROMPT), "metadata": {"index": i}} for i in range(3)],
        generation=generation, environment=env, tokenizer=tok, sampling=SamplingParams(max_new_tokens=8),
        max_total_length=128, max_turns=3,
    )
    assert result.rewards.tolist() == [1.25, 0.0, 1.25]
    assert result.correct.tolist() == [True, False, True] and result.turns == [2, 2, 2]
    assert "the game server is down" in result.info[1]["env_error"]
    assert result.env_metrics["failures"] == 1.0
