"""Every recipe under examples/configs validates (what `reinforge config show` checks)."""

from __future__ import annotations

import pytest

from reinforge.core.load import load_config
from reinforge.eval.config import EvalConfig
from tests.integration.example_plugins import recipe_registry
from tests.integration.grpo_helpers import REPO

RECIPES = sorted((REPO / "examples" / "configs").glob("*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_recipe_validates(recipe):
    config = load_config(recipe, registry=recipe_registry(recipe.read_text()))  # the example game's plugin too
    assert config.algorithm in {"grpo", "sft", "dpo"}


def test_eval_config_validates():
    config = load_config(REPO / "examples" / "configs" / "evals" / "eval.yaml", schema=EvalConfig)
    assert config.generation.backend == "vllm" and config.eval.metric == "pass@k"


def test_cpu_eval_config_matches_the_grpo_validation_set():
    """docs/recipes/pipelines.md evaluates CPU runs with this config: the same problems, prompt and verifier as GRPO's validation."""
    evaluation = load_config(REPO / "examples" / "configs" / "evals" / "arith-cpu.yaml", schema=EvalConfig)
    grpo = load_config(REPO / "examples" / "configs" / "grpo-arith-cpu.yaml")
    assert evaluation.generation.backend == "hf" and evaluation.eval.k_value == 4
    assert evaluation.data.dataset == grpo.data.val_dataset and evaluation.data.dataset_cfg == grpo.data.val_dataset_cfg
    assert evaluation.data.system_prompt == grpo.data.system_prompt and evaluation.data.prompt_file == grpo.data.prompt_file
    assert evaluation.env.env_cfg.require_boxed == grpo.env.env_cfg.require_boxed


def test_dpo_recipe_is_nemo_rls():
    """The published DPO recipe: 1B instruct model, 150 steps, 128 pairs per step, micro batch 2, 1024 tokens, beta 0.05."""
    config = load_config(REPO / "examples" / "configs" / "dpo.yaml")
    assert config.policy.model_name == "meta-llama/Llama-3.2-1B-Instruct"
    assert (config.dpo.max_num_steps, config.policy.train_global_batch_size, config.policy.train_micro_batch_size) == (150, 128, 2)
    assert config.policy.max_total_sequence_length == 1024 and config.loss_fn.reference_policy_kl_penalty == 0.05
    assert config.policy.optimizer.lr == 5.0e-6 and config.policy.scheduler.warmup_steps == 20
    assert config.data.dataset == "helpsteer3" and config.data.val_dataset_cfg.split == "validation"


@pytest.mark.parametrize(
    ("megatron", "dtensor"),
    [("grpo-deepscaler-1.5b-8K-megatron.yaml", "grpo-deepscaler-1.5b-8K.yaml"), ("dpo-megatron.yaml", "dpo.yaml")],
)
def test_megatron_recipes_keep_the_hyperparameters_of_their_dtensor_twins(megatron, dtensor):
    """Only the training backend, its options and the output folders may differ."""
    import attrs

    ours = load_config(REPO / "examples" / "configs" / megatron)
    theirs = load_config(REPO / "examples" / "configs" / dtensor)
    assert (ours.policy.backend, theirs.policy.backend) == ("megatron", "dtensor")
    assert type(ours.policy.backend_cfg).__name__ == "MegatronConfig"

    def hyperparameters(config):
        policy = attrs.evolve(config.policy, backend="-", backend_cfg=None)
        checkpointing = attrs.evolve(config.checkpointing, checkpoint_dir="-")
        logger = attrs.evolve(config.logger, log_dir="-")
        return attrs.evolve(config, policy=policy, checkpointing=checkpointing, logger=logger)

    assert hyperparameters(ours) == hyperparameters(theirs)
    assert ours.checkpointing.checkpoint_dir != theirs.checkpointing.checkpoint_dir


def test_smollm2_eval_config_matches_the_recipes_validation_set():
    """The real-model recipe is evaluated on exactly its validation problems, prompt and verifier."""
    evaluation = load_config(REPO / "examples" / "configs" / "evals" / "smollm2-arith-cpu.yaml", schema=EvalConfig)
    grpo = load_config(REPO / "examples" / "configs" / "grpo-smollm2-arith-cpu.yaml")
    assert evaluation.data.dataset == grpo.data.val_dataset and evaluation.data.dataset_cfg == grpo.data.val_dataset_cfg
    for key in ("system_prompt", "prompt_file", "example_turns", "max_input_seq_length"):
        assert getattr(evaluation.data, key) == getattr(grpo.data, key), key
    assert evaluation.env.env_cfg.require_boxed and grpo.env.env_cfg.require_boxed
    assert evaluation.generation.max_new_tokens == grpo.policy.generation.max_new_tokens == 64
