"""Evaluate a model folder: generate n samples per problem, verify, report pass@k / avg@k / cons@k."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reinforge.core.env_guard import guard_environment
from reinforge.executors.local import make_executor
from reinforge.rollouts.service import RolloutService
from reinforge.core.errors import ReinforgeError
from reinforge.core.registry import Registry
from reinforge.compose import load_dataset_records, load_tokenizer
from reinforge.core.sampling import SamplingParams
from reinforge.data.prompts import build_prompt_set, report_overlong
from reinforge.eval.config import EvalConfig
from reinforge.eval.metrics import batch_avg_at_k, batch_cons_at_k, batch_pass_at_k, cons_metric_name


def evaluate(config: EvalConfig, registry: Registry | None = None) -> dict[str, float]:
    registry = registry or Registry.create()
    settings, gen = config.eval, config.generation
    if settings.save_path and Path(settings.save_path).is_dir():  # checked now, not after the whole evaluation
        raise ReinforgeError(f"eval.save_path '{settings.save_path}' is a directory; name a .jsonl file to write the samples to")
    policy = gen.as_policy()
    tokenizer = load_tokenizer(policy, setting="generation.model_name")
    records = load_dataset_records(registry, config.data.dataset, config.data.dataset_cfg)
    prompts, stats = build_prompt_set(config.data, tokenizer, records)
    limit = f"data.max_input_seq_length={config.data.max_input_seq_length}"
    report_overlong(stats, split="evaluation", limit=limit, max_dropped_share=config.data.max_dropped_share)
    if not prompts:
        raise ReinforgeError(f"the evaluation set '{config.data.dataset}' is empty (or every prompt was too long)")
    executor = make_executor(config.cluster, registry)
    generation = executor.generation(policy, seed=settings.seed)
    environment = guard_environment(executor.environment(config.env), name=config.env.name, config=config.env.guard)
    rollouts = RolloutService(
        generation, environment, tokenizer, max_total_length=gen.max_total_sequence_length, sleep_between=False
    )
    n = settings.num_tests_per_prompt
    sampling = SamplingParams(
        temperature=gen.temperature,
        top_p=gen.top_p,
        top_k=gen.top_k,
        max_new_tokens=gen.max_new_tokens,
        stop_strings=gen.stop_strings,
        seed=settings.seed,
    )
    correct: list[bool] = []
    answers: list[str] = []
    rows: list[dict[str, Any]] = []
    try:
        for start in range(0, len(prompts), settings.batch_size):
            part = [p for p in prompts[start : start + settings.batch_size] for _ in range(n)]
            result = rollouts.collect(part, SamplingParams(**{**_fields(sampling), "seed": settings.seed + start}))
            for i, reward in enumerate(result.rewards.tolist()):
                # the Environment contract: info["extracted_answer"] is what the vote compares
                answer = str(result.info[i].get("extracted_answer") or result.responses[i].strip()[-64:])
                correct.append(bool(result.correct[i]))  # the environment's verdict, else reward >= 1
                answers.append(answer)
                rows.append({"problem": part[i]["metadata"].get("problem"), "answer": part[i]["metadata"].get("answer"),
                             "response": result.responses[i], "prediction": answer, "reward": reward})
    finally:
        generation.shutdown()
        environment.shutdown()
        executor.shutdown()
    k = settings.k_value
    metrics = {
        "num_problems": float(len(prompts)),
        "num_samples": float(len(correct)),
        f"avg@{n}": batch_avg_at_k(correct, n),
        f"pass@{k}": batch_pass_at_k(correct, n, k),
        cons_metric_name(k, n): batch_cons_at_k(answers, correct, n, k),  # "cons@k_estimate" beyond n = 64
    }
    score_key = {"pass@k": f"pass@{k}", "avg@k": f"avg@{n}", "cons@k": cons_metric_name(k, n)}[settings.metric]
    metrics["score"] = metrics[score_key]
    if settings.save_path:
        path = Path(settings.save_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return metrics


def _fields(sampling: SamplingParams) -> dict[str, Any]:
    import attrs

    return attrs.asdict(sampling, recurse=False)
