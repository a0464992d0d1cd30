"""One TRL `GRPOTrainer` run of the harness's workload (a child process; needs the `bench` extra).

    python -m benchmarks.harness.trl_side WORKLOAD.json OUT.json

Settings mirror `sides.reinforge_config`: one optimizer step per step (generation batch = train
batch, one iteration), accumulated over microbatches of reinforge's size (`grpo_settings`), beta 0,
the DAPO token-level loss, clip 0.2 / 0.28, group-scaled rewards, fp32 on the CPU, no gradient
checkpointing, constant lr, AdamW without weight decay, grad norm 1, prompts in file order
(shuffle_dataset=False). The reward is reinforge's math environment (math-verify on the boxed
answer), called on the same conversations as reinforge's rollouts.

Phases per step (seconds): total between the trainer's step callbacks (one optimizer step, all its
microbatches); generation = `_generate`; reward = `_calculate_rewards`; logprobs = the rest of
`_generate_and_score_completions` (TRL's old-policy pass, skipped with one step per batch, plus
tokenising); training = total - that.
"""

from __future__ import annotations

import functools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.harness.workload import Workload, read_records


class PhaseClock:
    """Seconds spent in wrapped methods since the step began."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = {}

    def wrap(self, owner: Any, method: str, phase: str) -> None:
        original = getattr(owner, method, None)
        if original is None:
            raise SystemExit(f"this TRL version has no GRPOTrainer.{method}; the harness times TRL through it")

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.spent[phase] = self.spent.get(phase, 0.0) + time.perf_counter() - start

        setattr(owner, method, timed)


def math_environment() -> Any:
    """The harness's reward on both sides: reinforge's math environment, boxed answers only."""
    from reinforge.environments.math import MathEnvironment, MathEnvironmentConfig

    return MathEnvironment(MathEnvironmentConfig(num_workers=1, require_boxed=True))


def score(environment: Any, prompts: list[Any], completions: list[Any], answer: list[str]) -> list[float]:
    """Rewards for TRL's conversational batch from a reinforge environment (prompt + completion, the answer)."""
    conversations = [[*p, *c] for p, c in zip(prompts, completions)]
    return [float(x) for x in environment.step(conversations, [{"answer": a} for a in answer]).rewards]


def grpo_settings(workload: Workload, output_dir: str) -> dict[str, Any]:
    """`GRPOConfig`'s arguments for the workload: one optimizer step per step, accumulated over microbatches of
    `workload.micro_rows` rows (reinforge's train_micro_batch_size); TRL generates the whole step's rows at once
    (its generation batch is microbatch x accumulation) and, with one iteration, skips the old-policy pass."""
    return {
        "output_dir": output_dir,
        "use_cpu": True,
        "bf16": False,
        "fp16": False,
        "seed": workload.seed,
        "per_device_train_batch_size": workload.micro_rows,
        "gradient_accumulation_steps": workload.accumulation,
        "num_generations": workload.generations,
        "num_iterations": 1,
        "max_completion_length": workload.new_tokens,
        "temperature": 1.0,
        "top_p": 1.0,
        "top_k": 0,
        "beta": 0.0,
        "epsilon": 0.2,
        "epsilon_high": 0.28,
        "loss_type": "dapo",  # divides by the generation batch's tokens: the same gradient however it is split
        "scale_rewards": "group",
        "shuffle_dataset": False,
        "max_steps": workload.steps,
        "learning_rate": workload.lr,
        "lr_scheduler_type": "constant",
        "weight_decay": 0.0,
        "adam_beta1": 0.9,
        "adam_beta2": 0.999,
        "adam_epsilon": 1e-8,
        "max_grad_norm": 1.0,
        "gradient_checkpointing": False,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "dataloader_num_workers": 0,
        "disable_tqdm": True,
    }


def build_trainer(workload: Workload, reward: Any, scratch: str, callbacks: list[Any]) -> Any:
    """TRL's `GRPOTrainer` on the workload's model and problems, set to reinforge's side as the module doc says."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    records = read_records(workload)
    system = [{"role": "system", "content": workload.system_prompt}]
    dataset = Dataset.from_list(
        [{"prompt": [*system, {"role": "user", "content": r["problem"]}], "answer": r["answer"]} for r in records]
    )
    model = AutoModelForCausalLM.from_pretrained(workload.model_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(workload.model_dir)
    config = GRPOConfig(**grpo_settings(workload, scratch))
    return GRPOTrainer(
        model=model, processing_class=tokenizer, reward_funcs=reward, args=config, train_dataset=dataset,
        callbacks=callbacks,
    )


def main(workload_path: str, out_path: str) -> None:
    from transformers import TrainerCallback

    workload = Workload.load(workload_path)
    torch.set_num_threads(workload.threads)
    torch.manual_seed(workload.seed)
    environment = math_environment()
    clock = PhaseClock()
    steps: list[dict[str, float]] = []
    pending: dict[str, float] = {}

    def reward(prompts: list[Any], completions: list[Any], answer: list[str], **kwargs: Any) -> list[float]:
        pending["mean_prompt_length"] = statistics.fmean(
            len(trainer.processing_class.apply_chat_template(p, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"])
            for p in prompts
        )
        rewards = score(environment, prompts, completions, answer)
        pending["reward_mean"] = statistics.fmean(rewards)
        ids = kwargs.get("completion_ids")
        if ids is not None:
            pending["response_length_mean"] = statistics.fmean(len(i) for i in ids)
        pending["num_rollouts"] = float(len(rewards))
        return rewards

    class StepClock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):  # noqa: ANN001
            clock.spent.clear()
            pending["_start"] = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
            total = time.perf_counter() - pending.pop("_start")
            prepare = clock.spent.get("prepare", 0.0)
            generation, scoring = clock.spent.get("generation", 0.0), clock.spent.get("reward", 0.0)
            steps.append({
                "generation": generation,
                "reward": scoring,
                "logprobs": max(prepare - generation - scoring, 0.0),
                "training": total - prepare,
                "refit": 0.0,
                "total": total,
                **pending,
            })

    with tempfile.TemporaryDirectory() as scratch:
        trainer = build_trainer(workload, reward, scratch, callbacks=[StepClock()])
        clock.wrap(trainer, "_generate_and_score_completions", "prepare")
        clock.wrap(trainer, "_generate", "generation")
        clock.wrap(trainer, "_calculate_rewards", "reward")
        trainer.train()
    environment.shutdown()
    Path(out_path).write_text(json.dumps(steps, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:3])
