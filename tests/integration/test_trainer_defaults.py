"""Defaults of the Python API that used to give nothing: generation defaults to hf, the global batch follows
GRPO's prompts x generations unless set, a run whose rewards stay 0 says so and names the prompt template, and a
config passed where the algorithm goes is named."""

from __future__ import annotations

import pytest

import reinforge as rf

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def trainer(model_dir, tmp_path, *, reward=lambda prompt, response, **_: float(len(response) % 3), steps=1, **parts):
    parts.setdefault("algorithm", rf.GRPO(rf.GRPOConfig(num_prompts_per_step=2, num_generations_per_prompt=2)))
    parts.setdefault("policy", rf.backends.DTensorTraining(str(model_dir), max_total_sequence_length=128))
    parts.setdefault("generation", rf.backends.HFGeneration(max_new_tokens=4))
    return rf.Trainer(environment=reward, train_data=rf.data.arithmetic_problems(num_samples=16), loop=rf.LoopConfig(max_steps=steps),
                      loggers=["jsonl"], log_dir=str(tmp_path / "logs"), **parts)


def test_no_generation_means_hf_and_the_global_batch_is_prompts_times_generations(tiny_model_dir, tmp_path):
    run = trainer(tiny_model_dir, tmp_path, generation=None,
                  algorithm=rf.GRPO(rf.GRPOConfig(num_prompts_per_step=4, num_generations_per_prompt=4))).run
    try:
        assert type(run.generation).__name__ == "HFGenerationBackend" and run.generation_config.backend == "hf"
        assert run.policy_config.train_global_batch_size == 16  # not the default 32, which 4 x 4 rollouts cannot fill
        assert run.policy_config.train_micro_batch_size == 4
    finally:
        run.shutdown()


def test_a_global_batch_that_was_set_is_kept_and_the_microbatch_fits_a_derived_one(tiny_model_dir, tmp_path):
    set_by_user = trainer(tiny_model_dir, tmp_path, algorithm=rf.GRPO(rf.GRPOConfig(num_prompts_per_step=4, num_generations_per_prompt=4)),
                          policy=rf.backends.DTensorTraining(str(tiny_model_dir), train_global_batch_size=8)).run
    set_by_user.shutdown()
    assert set_by_user.policy_config.train_global_batch_size == 8
    derived = trainer(tiny_model_dir, tmp_path, algorithm=rf.GRPO(rf.GRPOConfig(num_prompts_per_step=3, num_generations_per_prompt=2))).run
    derived.shutdown()
    assert (derived.policy_config.train_global_batch_size, derived.policy_config.train_micro_batch_size) == (6, 2)
    with pytest.raises(rf.ReinforgeError, match=r"must be a multiple of policy.train_global_batch_size \(32\)"):
        trainer(tiny_model_dir, tmp_path, policy=rf.backends.DTensorTraining(str(tiny_model_dir), train_global_batch_size=32))


@pytest.mark.integration
def test_a_run_whose_rewards_stay_zero_says_so_and_names_the_template(tiny_model_dir, tmp_path, capsys):
    metrics = trainer(tiny_model_dir, tmp_path, reward=lambda prompt, response, **_: 0.0, steps=3).fit()
    assert metrics["train/reward_mean"] == 0.0
    err = capsys.readouterr().err
    assert "every reward of the first 3 steps was 0" in err and "data.prompt_file='cot'" in err
    assert err.count("every reward") == 1  # once


@pytest.mark.integration
def test_no_warning_when_something_is_rewarded(tiny_model_dir, tmp_path, capsys):
    trainer(tiny_model_dir, tmp_path, reward=lambda prompt, response, **_: 1.0, steps=3).fit()
    assert "every reward" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("algorithm", "said"),
    [
        (rf.GRPOConfig(), "a GRPOConfig: a config was passed where an algorithm goes; wrap it in its algorithm: algorithm=rf.GRPO(rf.GRPOConfig(...))"),
        (rf.SFTConfig(), "algorithm=rf.SFT(rf.SFTConfig(...))"),
        (rf.GRPO, "the class GRPO itself; pass an instance"),
        ("grpo", "a str, which has no setup()/train_step()"),
    ],
)
def test_something_else_than_an_algorithm_is_named(tmp_path, algorithm, said):
    with pytest.raises(rf.ReinforgeError) as err:
        rf.Trainer(algorithm=algorithm, policy=rf.backends.DTensorTraining("m/"), train_data=[])
    assert said in str(err.value)
