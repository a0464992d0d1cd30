import reinforge as rf


def reward(prompt, response, answer, **metadata):  # any function (prompt, response, **record fields) -> float
    return float(f"\\boxed{{{answer}}}" in response)


trainer = rf.Trainer(
    algorithm=rf.GRPO(rf.GRPOConfig(num_prompts_per_step=8, num_generations_per_prompt=4)),
    policy=rf.backends.DTensorTraining("results/models/small-arith", lr=5e-5, train_global_batch_size=32),
    generation=rf.backends.HFGeneration(max_new_tokens=40),  # or: rf.backends.VLLMGeneration(max_new_tokens=40)
    environment=reward,
    train_data=rf.data.arithmetic_problems(num_samples=100, max_operand=10),  # or any list of dicts / datasets.Dataset
    data=rf.DataConfig(prompt_file=None, system_prompt="Put your final answer within \\boxed{}."),
    loop=rf.LoopConfig(max_steps=20),
)
print(trainer.fit())
