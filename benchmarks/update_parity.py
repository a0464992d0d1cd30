"""Do reinforge and TRL take the same GRPO step on the same rollouts? Advantages, gradient norm and update compared.

    python -m benchmarks.update_parity                        # demo model, 16 prompts x 8 x 64 tokens, 3 steps
    python -m benchmarks.update_parity --model tiny --prompts 2 --generations 2 --new-tokens 8 --steps 2

Both frameworks run in this process (TRL's `bench` extra must be installed here) from the same model files
with the harness's matched settings (`benchmarks.harness.sides.reinforge_config`, `trl_side.build_trainer`).
reinforge runs first with its own `hf` generator; every step's prompts and sampled response ids are recorded,
and TRL is then handed exactly those responses (its `_generate_single_turn` replays them, after checking that
its prompts are token for token the ones reinforge sampled from). So both score the same responses with the
same math environment and take one optimizer step on them; any difference left is in the update.

Per step it reports the largest reward and advantage difference, both gradient norms (before clipping), both
losses, and how far reinforge's weight update (after - before) is from TRL's: ||dR - dT|| / ||dT||, the
cosine between them, and the tensor where they differ most. From step 2 on, TRL replays responses reinforge
sampled from its own weights after step 1; the two policies differ there only by the previous steps' rounding.

Why the update and not the weights: the weights agree to about the learning rate whatever the update was.
Why the gradient norm too: Adam's first step is nearly blind to the gradient's scale (m / sqrt(v)), so a loss
normalised by the wrong count would leave step 1's update almost unchanged; the norm shows it directly.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml

from benchmarks.harness import update_compare
from benchmarks.harness.sides import REPO, reinforge_config
from benchmarks.harness.trl_side import build_trainer, math_environment, score
from benchmarks.harness.workload import Workload, prepare

RESULTS = REPO / "benchmarks" / "results"
EnvironmentFactory = Callable[[], Any]  # () -> a reinforge Environment (step / shutdown)



def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.update_parity", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo", help="demo (the CPU demo's model), tiny, small, or a model folder")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--generations", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument(
        "--advantage-eps", type=float,
        help="reinforge's advantage epsilon, std + eps (default: its own, 1e-6; TRL's is 1e-4): 1e-4 removes the "
        "one setting the two sides do not share",
    )
    parser.add_argument("--out", help="JSON path (default benchmarks/results/update_parity_<model>.json)")
    return parser.parse_args(argv)


def resolve_model(name: str, scratch: Path, threads: int) -> Path:
    from benchmarks.run import resolve_model as harness_resolve

    return harness_resolve(argparse.Namespace(model=name, smollm2=False, threads=threads), scratch)


def state(tensors: Any) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().to("cpu", torch.float32).clone() for name, tensor in tensors}


# ---------------------------------------------------------------------- reinforge (samples and records)
def run_reinforge(
    workload: Workload,
    scratch: Path,
    environment: EnvironmentFactory = math_environment,
    advantage_eps: float | None = None,
    overrides: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """reinforge's run on the workload; per step: prompts, responses, rewards, advantages, loss, grad norm, weights.

    `overrides` (dotted keys) change reinforge's side only: the tests use them to check that a real
    difference in the update is seen."""
    import reinforge as rf

    scratch.mkdir(parents=True, exist_ok=True)
    config_path = scratch / "config.yaml"
    config_path.write_text(yaml.safe_dump(reinforge_config(workload, scratch, overrides), sort_keys=False))
    config = rf.load_config(config_path)
    algorithm = None if advantage_eps is None else grpo_with_eps(config, advantage_eps)
    trainer = rf.Trainer.from_config(config, algorithm=algorithm, environment=environment())
    run = trainer.run
    steps: list[dict[str, Any]] = []
    current: dict[str, Any] = {}

    generate, environment_step, train = run.generation.generate, run.environment.step, run.policy.train

    def recording_generate(batch: Any, sampling: Any) -> Any:
        out = generate(batch, sampling)
        ids, prompt_lengths, lengths = out["output_ids"], out["prompt_lengths"], out["generation_lengths"]
        current["prompts"] = [ids[i, : int(prompt_lengths[i])].tolist() for i in range(ids.shape[0])]
        current["responses"] = [
            ids[i, int(prompt_lengths[i]) : int(prompt_lengths[i]) + int(lengths[i])].tolist() for i in range(ids.shape[0])
        ]
        return out

    def recording_step(conversations: Any, metadata: Any) -> Any:
        result = environment_step(conversations, metadata)
        current["rewards"] = [float(r) for r in result.rewards]
        return result

    def recording_train(batch: Any, loss_fn: Any, temperature: float = 1.0) -> dict[str, float]:
        mask = batch["token_mask"].double()
        current["advantages"] = ((batch["advantages"].double() * mask).sum(1) / mask.sum(1).clamp(min=1)).tolist()
        metrics = train(batch, loss_fn, temperature=temperature)
        current["loss"], current["grad_norm"] = float(metrics["loss"]), float(metrics["grad_norm"])
        current["weights"] = state(pair for bucket in run.policy.named_weights(None) for pair in bucket)
        steps.append(dict(current))
        current.clear()
        return metrics

    run.generation.generate, run.environment.step, run.policy.train = recording_generate, recording_step, recording_train
    trainer.fit()
    return steps


def grpo_with_eps(config: Any, eps: float) -> Any:
    """GRPO whose advantages divide by std + `eps`, through the algorithm's `advantages` hook."""
    from reinforge.algorithms.advantages import grpo_advantages
    from reinforge.algorithms.grpo import GRPO

    class GRPOWithEps(GRPO):
        def advantages(self, rewards: torch.Tensor, group: int) -> torch.Tensor:
            cfg = self.config
            return grpo_advantages(
                rewards, group, leave_one_out=cfg.use_leave_one_out_baseline, normalize=cfg.normalize_rewards,
                clip_low=cfg.advantage_clip_low, clip_high=cfg.advantage_clip_high, eps=eps,
            )

    return GRPOWithEps.from_run_config(config)


# ---------------------------------------------------------------------- TRL (replays and records)
def run_trl(
    workload: Workload, scratch: Path, recorded: list[dict[str, Any]], environment_factory: EnvironmentFactory = math_environment
) -> list[dict[str, Any]]:
    """TRL's run on the workload, generating nothing: each step replays reinforge's responses for that step."""
    from transformers import TrainerCallback

    environment = environment_factory()
    steps: list[dict[str, Any]] = [{} for _ in recorded]
    position = {"step": 0}

    def reward(prompts: list[Any], completions: list[Any], answer: list[str], **kwargs: Any) -> list[float]:
        rewards = score(environment, prompts, completions, answer)
        steps[position["step"]]["rewards"] = rewards
        return rewards

    class Record(TrainerCallback):
        def on_step_end(self, args, state_, control, model=None, **kwargs):  # noqa: ANN001
            steps[position["step"]]["weights"] = state(model.state_dict().items())
            position["step"] += 1

        def on_log(self, args, state_, control, logs=None, **kwargs):  # noqa: ANN001
            if logs and "grad_norm" in logs:  # the step's log comes after its on_step_end
                steps[position["step"] - 1].update(loss=float(logs["loss"]), grad_norm=float(logs["grad_norm"]))

    trainer = build_trainer(workload, reward, str(scratch / "trl"), callbacks=[Record()])

    def replay(prompt_ids: list[list[int]], *args: Any, **kwargs: Any) -> tuple[list[list[int]], None]:
        step = position["step"]
        update_compare.check_same_prompts(recorded[step]["prompts"], prompt_ids, step + 1)
        return [list(r) for r in recorded[step]["responses"]], None

    generate_and_score = trainer._generate_and_score_completions

    def recording_score(inputs: Any) -> Any:
        out = generate_and_score(inputs)
        steps[position["step"]]["advantages"] = [float(a) for a in out["advantages"].reshape(-1)]
        return out

    trainer._generate_single_turn = replay
    trainer._generate_and_score_completions = recording_score
    trainer.train()
    environment.shutdown()
    return steps


def measure(
    workload: Workload,
    scratch: Path,
    *,
    environment: EnvironmentFactory = math_environment,
    advantage_eps: float | None = None,
    overrides: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Run reinforge (sampling), then TRL (replaying), from the same weights; the per-step comparison."""
    from transformers import AutoModelForCausalLM

    before = state(AutoModelForCausalLM.from_pretrained(workload.model_dir, dtype=torch.float32).state_dict().items())
    ours = run_reinforge(workload, scratch / "reinforge", environment, advantage_eps, overrides)
    theirs = run_trl(workload, scratch, ours, environment)
    return compare(before, ours, theirs)


def compare(before: dict[str, torch.Tensor], ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    previous_ours, previous_theirs = before, before
    for index, (a, b) in enumerate(zip(ours, theirs)):
        # Each step's update from that framework's own previous weights; the cumulative one from the start.
        step_update = update_compare.update_difference(previous_ours, a["weights"], previous_theirs, b["weights"])
        total = update_compare.update_difference(before, a["weights"], before, b["weights"])
        rows.append({
            "step": index + 1,
            "reward_max_abs_difference": update_compare.max_abs_difference(a["rewards"], b["rewards"]),
            "reward_mean": sum(a["rewards"]) / len(a["rewards"]),
            "advantage_max_abs_difference": update_compare.max_abs_difference(a["advantages"], b["advantages"]),
            "advantage_max_abs": max(abs(x) for x in b["advantages"]),
            "grad_norm": {"reinforge": a["grad_norm"], "trl": b["grad_norm"]},
            "grad_norm_relative_difference": update_compare.relative_difference(a["grad_norm"], b["grad_norm"]),
            "loss": {"reinforge": a["loss"], "trl": b["loss"]},
            "step_update": step_update,
            "cumulative_update": total,
        })
        previous_ours, previous_theirs = a["weights"], b["weights"]
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="one GRPO step on the same rollouts: reinforge vs TRL")
    for column in ("step", "max |dr|", "max |dA|", "grad norm R", "grad norm T", "rel. diff", "update rel. diff",
                   "cosine", "worst tensor (rel.)"):
        table.add_column(column, justify="right")
    for row in rows:
        update = row["step_update"]
        table.add_row(
            str(row["step"]), f"{row['reward_max_abs_difference']:.1e}", f"{row['advantage_max_abs_difference']:.1e}",
            f"{row['grad_norm']['reinforge']:.6f}", f"{row['grad_norm']['trl']:.6f}",
            f"{row['grad_norm_relative_difference']:.1e}", f"{update['relative']:.1e}", f"{update['cosine']:.9f}",
            f"{update['worst_tensor']} ({update['worst_relative']:.1e})",
        )
    Console(width=160).print(table)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import trl  # noqa: F401
    except ImportError:
        print(
            "benchmarks.update_parity runs TRL in this process, and trl is not installed in this Python "
            f"({sys.executable}). Install the bench extra here (bash scripts/install_bench.sh) or run this with the "
            "Python that has it, e.g. .venv/bin/python -m benchmarks.update_parity.",
            file=sys.stderr,
        )
        return 2
    from benchmarks.run import versions

    torch.set_num_threads(args.threads)
    here = versions()
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        workload = prepare(
            scratch / "workload", resolve_model(args.model, scratch, args.threads),
            prompts_per_step=args.prompts, generations=args.generations, new_tokens=args.new_tokens, steps=args.steps,
            lr=args.lr, seed=args.seed, threads=args.threads, max_total_sequence_length=args.max_length,
        )  # fmt: skip
        rows = measure(workload, scratch, advantage_eps=args.advantage_eps)
    doc = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": {k: v for k, v in vars(args).items() if k != "out"},
        "versions": here,
        "steps": rows,
    }
    out = Path(args.out) if args.out else RESULTS / f"update_parity_{args.model}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1))
    print_table(rows)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
