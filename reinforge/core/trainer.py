"""`Trainer`: owns the loop's bookkeeping — steps, validation schedule, checkpoints, resume,
logging, timing — and leaves the step itself to the algorithm plugin.

    trainer = Trainer.from_config(load_config("recipe.yaml", ["policy.model_name=/ckpt/hf"]))
    trainer.fit()

`reinforge train` runs exactly this.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import torch

from reinforge.core.checkpoint import CheckpointManager, check_writable
from reinforge.core.config import dump_yaml
from reinforge.core.errors import ReinforgeError
from reinforge.core.interfaces import Algorithm, Environment, GenerationBackend, TrainingBackend
from reinforge.core.registry import Registry
from reinforge.core.run_guard import StopRequests, check_logged_metric, check_metric_name, warn
from reinforge.core.run_parts import RunParts, build_run_parts
from reinforge.core.trainer_state import (
    fingerprint_differences,
    read_trainer_state,
    run_fingerprint,
    write_trainer_state,
)


class Trainer:
    def __init__(self, algorithm: Algorithm, run: RunParts, config: Any) -> None:
        self.algorithm = algorithm
        self.run = run
        self.config = config
        self.checkpoints = CheckpointManager(config.checkpointing)
        self.step = 0
        self.last_metrics: dict[str, float] = {}
        self._last_val: dict[str, float] = {}
        self.stopped_early: str | None = None  # why fit() left the loop before max_steps (SIGTERM, time budget)
        algorithm.setup(run)

    @classmethod
    def from_config(
        cls,
        config: Any,
        registry: Registry | None = None,
        *,
        algorithm: Algorithm | None = None,
        policy: TrainingBackend | None = None,
        generation: GenerationBackend | None = None,
        environment: Environment | None = None,
    ) -> Trainer:
        """Resolve every part by name through the registry, unless an object is passed for it."""
        registry = registry or Registry.create()
        check_writable(config)  # before minutes of model loading, not at the first save
        if algorithm is None:
            algorithm = registry.resolve("algorithm", config.algorithm)(config)
        _seed_everything(algorithm.seed)
        run = build_run_parts(
            config,
            registry,
            algorithm=algorithm,
            seed=algorithm.seed,
            prompts_per_step=algorithm.prompts_per_step,
            overrides={"policy": policy, "generation": generation, "environment": environment},
        )
        return cls(algorithm, run, config)

    # ------------------------------------------------------------------ the loop
    def fit(self) -> dict[str, float]:
        """Train to `max_steps` (resuming from the latest checkpoint when configured); return the last metrics."""
        algorithm, run = self.algorithm, self.run
        ckpt = self.config.checkpointing
        stop = StopRequests(ckpt.save_before_minutes)
        try:
            check_writable(self.config)
            check_metric_name(algorithm, ckpt)
            if ckpt.enabled and ckpt.resume:
                self.resume()
            run.logger.log_config(_plain(self.config))
            if self.step == 0 and algorithm.val_at_start:
                self._log(algorithm.validate(0), 0)
            with stop:
                while self.step < algorithm.max_steps:
                    self.step += 1
                    metrics = self._one_step(self.step)
                    self._log(metrics, self.step)
                    if stop.requested(self.step) and self.step < algorithm.max_steps:
                        self._stop_early(stop.reason)
                        break
        finally:
            run.shutdown()
        return self.last_metrics

    def _stop_early(self, reason: str) -> None:
        """SIGTERM or the wall-clock budget: make sure this step is saved, then leave the loop (exit 0)."""
        ckpt = self.config.checkpointing
        if ckpt.enabled and self.checkpoints.latest_step() != self.step:
            self.save(self.step, self.last_metrics)
        if ckpt.enabled:
            where = f"; resume with the same command (checkpoint {ckpt.checkpoint_dir})"
        else:
            where = " (checkpointing is off: nothing saved)"
        warn(f"stopped after step {self.step}: {reason}{where}")
        self.stopped_early = reason

    def _one_step(self, step: int) -> dict[str, float]:
        algorithm, run = self.algorithm, self.run
        with run.timer.phase("total"):
            prompts = next(run.loader)
            metrics = dict(algorithm.train_step(step, prompts))
            last = step == algorithm.max_steps
            period = algorithm.val_period
            if (period and step % period == 0) or (last and algorithm.val_at_end and run.val_prompts):
                self._last_val = algorithm.validate(step)
                metrics.update(self._last_val)
            ckpt = self.config.checkpointing
            if ckpt.enabled and (step % ckpt.save_period == 0 or last):
                with run.timer.phase("checkpoint"):
                    # Only this step's metrics: a validation score from an earlier step must not rank this checkpoint.
                    self.save(step, metrics)
        metrics.update(run.timer.pop())
        return metrics

    def _log(self, metrics: dict[str, float], step: int) -> None:
        check_logged_metric(self.config.checkpointing, metrics)
        self.last_metrics = metrics
        self.run.logger.log(metrics, step)

    # ------------------------------------------------------------------ checkpoints
    def save(self, step: int, metrics: dict[str, float]) -> Path:
        """Write checkpoint `step`: policy, dataloader, trainer state (JSON + safetensors, no pickle), manifest."""
        run = self.run

        def write(directory: Path) -> None:
            run.policy.save(str(directory / "policy"))
            (directory / "dataloader.json").write_text(json.dumps(run.loader.state_dict()))
            write_trainer_state(directory, self.algorithm.state_dict())

        fingerprint = run_fingerprint(_plain(self.config))
        return self.checkpoints.save(
            step,
            write,
            training_info={"step": step, "consumed_prompts": step * self.algorithm.prompts_per_step, "fingerprint": fingerprint},
            config_yaml=dump_yaml(self.config),
            metrics=metrics,
        )

    def resume(self) -> bool:
        """Continue from the newest intact checkpoint of this run, if there is one.

        Every checkpoint is checked against its manifest before anything in it is read; damaged
        ones are skipped with a warning. Another run's checkpoint is refused unless
        `checkpointing.resume=force`.
        """
        path = self.checkpoints.find_resumable(warn)
        if path is None:
            return False
        info = self.checkpoints.load_training_info(path)
        differences = fingerprint_differences(info.get("fingerprint") or {}, run_fingerprint(_plain(self.config)))
        if differences and self.config.checkpointing.resume != "force":
            raise ReinforgeError(
                f"{path} belongs to another run: {'; '.join(differences)}. Nothing was loaded. Use another "
                "checkpointing.checkpoint_dir, pass checkpointing.resume=false to start over, or "
                "checkpointing.resume=force to continue from it anyway"
            )
        step = int(info["step"])
        warn(f"resuming from step {step} of {self.checkpoints.root}; pass checkpointing.resume=false to start over")
        self.run.policy.load(str(path / "policy"))
        self.run.loader.load_state_dict(json.loads((path / "dataloader.json").read_text()))
        self.algorithm.load_state_dict(read_trainer_state(path))
        self.step = step
        resume_logs = getattr(self.run.logger, "resume_at", None)
        if resume_logs is not None:
            resume_logs(step, info.get("metrics") or {})
        return True


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def _plain(config: Any) -> dict[str, Any]:
    from reinforge.core.config import to_dict

    return to_dict(config)
