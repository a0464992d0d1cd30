"""Evaluate a model folder: generate n samples per problem, verify, report pass@k / avg@k / cons@k."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from reinforge.compose import load_dataset_records, load_tokenizer
from reinforge.core.env_guard import guard_environment
from reinforge.core.errors import ReinforgeError
from reinforge.core.output_paths import check_output_file
from reinforge.core.registry import Registry
from reinforge.core.sampling import sampling_params
from reinforge.data.prompts import build_prompt_set, report_overlong
from reinforge.eval.config import EvalConfig
from reinforge.executors.local import make_executor
from reinforge.rollouts.evaluation import evaluate as evaluate_prompts
from reinforge.rollouts.service import RolloutService


def evaluate(config: EvalConfig, registry: Registry | None = None) -> dict[str, float]:
    registry = registry or Registry.create()
    settings, gen = config.eval, config.generation
    if settings.save_path:  # checked now, not after the whole evaluation
        check_output_file(settings.save_path, "eval.save_path")
    model, generation_config = gen.model(), gen.sampling()
    tokenizer = load_tokenizer(model, setting="generation.model_name")
    records = load_dataset_records(registry, config.data.dataset, config.data.dataset_cfg)
    prompts, stats = build_prompt_set(config.data, tokenizer, records)
    limit = f"data.max_input_seq_length={config.data.max_input_seq_length}"
    report_overlong(stats, split="evaluation", limit=limit, max_dropped_share=config.data.max_dropped_share)
    if not prompts:
        raise ReinforgeError(f"the evaluation set '{config.data.dataset}' is empty (or every prompt was too long)")
    executor = make_executor(config.cluster, registry)
    generation = executor.generation(model, generation_config, seed=settings.seed)
    environment = guard_environment(executor.environment(config.env), name=config.env.name, config=config.env.guard)
    rollouts = RolloutService(
        generation, environment, tokenizer, max_total_length=model.max_total_sequence_length, sleep_between=False,
        tools=config.data.tools,
    )
    n = settings.num_tests_per_prompt
    try:
        if settings.max_turns > 1:
            rollouts.check_turns()
        result = evaluate_prompts(
            rollouts,
            prompts,
            n,
            lambda start: sampling_params(generation_config, settings.seed + start),  # each chunk seeded by its position
            chunk_size=settings.batch_size,
            max_turns=settings.max_turns,
            summed_metrics=getattr(environment, "summed_metrics", ()),
        )
    finally:
        generation.shutdown()
        environment.shutdown()
        executor.shutdown()
    k = settings.k_value
    cons_name, cons = result.cons_at(k)  # "cons@k_estimate" beyond n = 64
    metrics = {
        "num_problems": float(result.num_prompts),
        "num_samples": float(len(result.correct)),
        f"avg@{n}": result.avg_at_n(),
        f"pass@{k}": result.pass_at(k),
        cons_name: cons,
    }
    score_key = {"pass@k": f"pass@{k}", "avg@k": f"avg@{n}", "cons@k": cons_name}[settings.metric]
    metrics["score"] = metrics[score_key]
    if settings.save_path:
        save_samples(settings.save_path, result.samples, metrics)
    return metrics


class ResultsNotSaved(ReinforgeError):
    """The evaluation finished but its samples could not be written; `metrics` holds its results."""

    def __init__(self, message: str, metrics: dict[str, float]) -> None:
        super().__init__(message)
        self.metrics = metrics


def save_samples(save_path: str, samples: list[dict[str, Any]], metrics: dict[str, float]) -> None:
    """Write the samples as JSONL; when that fails (a disk filled, a folder replaced mid-run), print them
    to stdout instead, so the finished evaluation is not lost, and raise saying where they could not go."""
    lines = "".join(json.dumps(r) + "\n" for r in samples)
    path = Path(save_path).expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(lines)
    except OSError as exc:
        sys.stdout.write(lines)
        sys.stdout.flush()
        raise ResultsNotSaved(
            f"the evaluation finished, but its {len(samples)} samples could not be written to eval.save_path "
            f"'{save_path}': {exc.strerror or exc} ({exc.filename or path}). They were printed to stdout above as JSON "
            f"lines, and the metrics are {json.dumps(metrics)}; point eval.save_path at a writable file next time",
            metrics,
        ) from None
