"""The package's three plugins from Python: the same run as recipe.yaml, through `import reinforge` alone."""

import reinforge as rf
from reinforge_calculator.algorithm import MovingBaselineGRPO

trainer = rf.Trainer(
    algorithm=MovingBaselineGRPO(rf.GRPOConfig(num_prompts_per_step=4, num_generations_per_prompt=4, max_rollout_turns=2)),
    policy=rf.backends.DTensorTraining("results/models/small-arith", lr=5e-5, max_total_sequence_length=160),
    generation=rf.backends.Generation("calculator_stop", max_new_tokens=32, engine="hf"),
    environment=rf.environments.Registered("calc_tag", max_calls=1),
    train_data=rf.data.arithmetic_problems(num_samples=64, max_operand=10),
    data=rf.DataConfig(
        prompt_file=None,
        system_prompt="Use <calc>EXPRESSION</calc> to compute if you need to, then put your final answer within \\boxed{}.",
        max_input_seq_length=96,
    ),
    loop=rf.LoopConfig(max_steps=10),
)
print(trainer.fit())
