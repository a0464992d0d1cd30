"""`TrainingLoop`: owns the loop's bookkeeping — steps, validation schedule, checkpoints, resume,
logging, timing — and leaves the step itself to the algorithm plugin.

It receives parts that are already built (`RunParts`); `reinforge.Trainer` is the composition
root that builds them, from Python objects or from a YAML config, and runs this loop:

    trainer = reinforge.Trainer.from_config(reinforge.load_config("recipe.yaml"))
    trainer.fit()
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import attrs
import torch

from reinforge.core.checkpoint import CheckpointManager, check_writable
from reinforge.core.config import dump_yaml
from reinforge.core.errors import ReinforgeError
from reinforge.core.interfaces import Algorithm
from reinforge.core.loop import ComposedRunConfig, schedule_section_name
from reinforge.core.run import RunParts
from reinforge.core.run_guard import StopRequests, ZeroSignalWatch, check_logged_metric, check_metric_name, warn
from reinforge.core.timer import idle_times
from reinforge.core.trainer_state import (
    fingerprint_differences,
    read_trainer_state,
    run_fingerprint,
    write_trainer_state,
)
from reinforge.core.weights_fingerprint import WeightsRecord, weights_record


class TrainingLoop:
    def __init__(self, algorithm: Algorithm, run: RunParts) -> None:
        self.algorithm = algorithm
        self.run = run
        self.loop = run.loop
        self.config = run.config  # the YAML run config, if any (written into every checkpoint)
        self.checkpoints = CheckpointManager(run.loop.checkpointing())
        self.step = 0
        self.last_metrics: dict[str, float] = {}
        self._last_val: dict[str, float] = {}
        self.stopped_early: str | None = None  # why fit() left the loop before max_steps (SIGTERM, time budget)
        self.zero_signal = ZeroSignalWatch()  # warns when every advantage stays 0 (a run learning nothing)
        self._weights_record: WeightsRecord | None = None  # the model's weights digest, for the run fingerprint
        algorithm.setup(run)

    # ------------------------------------------------------------------ the loop
    def fit(self) -> dict[str, float]:
        """Train to `max_steps` (resuming from the latest checkpoint when configured); return the last metrics."""
        algorithm, run = self.algorithm, self.run
        ckpt = self.checkpoints.config
        stop = StopRequests(ckpt.save_before_minutes)
        try:
            if self.config is not None:
                check_writable(self.config)
            check_metric_name(algorithm, ckpt)
            if ckpt.enabled and self.loop.resume:
                self.resume()
            run.logger.log_config(self._plain_config())
            if self.step == 0 and self.loop.val_at_start:
                self._log(algorithm.validate(0), 0)
            with stop:
                while self.step < self.loop.max_steps:
                    self.step += 1
                    metrics = self._one_step(self.step)
                    self._log(metrics, self.step)
                    self.zero_signal.observe(self.step, metrics)
                    if stop.requested(self.step) and self.step < self.loop.max_steps:
                        self._stop_early(stop.reason)
                        break
        except KeyboardInterrupt:  # Ctrl-C: a save in progress was finished (or abandoned) first; say what is kept
            self._interrupted()
            raise
        finally:
            run.shutdown()
        return self.last_metrics

    def _interrupted(self) -> None:
        ckpt = self.checkpoints.config
        latest = self.checkpoints.latest_step() if ckpt.enabled else None
        if latest is not None:
            warn(f"interrupted; last complete checkpoint: step {latest} in {self.checkpoints.root}; run the same command to resume")
        else:
            warn("interrupted; " + ("no checkpoint was saved yet" if ckpt.enabled else "checkpointing is off: nothing was saved"))

    def _stop_early(self, reason: str) -> None:
        """SIGTERM or the wall-clock budget: make sure this step is saved, then leave the loop (exit 0)."""
        ckpt = self.checkpoints.config
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
            last = step == self.loop.max_steps
            period = self.loop.val_period
            if (period and step % period == 0) or (last and self.loop.val_at_end and run.val_prompts):
                self._last_val = algorithm.validate(step)
                metrics.update(self._last_val)
            ckpt = self.checkpoints.config
            if ckpt.enabled and (step % ckpt.save_period == 0 or last):
                with run.timer.phase("checkpoint"):
                    # Only this step's metrics: a validation score from an earlier step must not rank this checkpoint.
                    self.save(step, metrics)
        phases = run.timer.pop()
        metrics.update(phases)
        metrics.update(idle_times(phases))
        return metrics

    def _weights(self, plain: dict[str, Any], known: Any = None) -> WeightsRecord:
        """The model folder's weights digest, computed once per run (or taken from a checkpoint's record)."""
        if self._weights_record is None:
            model = (plain.get("policy") or {}).get("model_name")
            self._weights_record = weights_record(model, known if isinstance(known, dict) else None)
        return self._weights_record

    def _plain_config(self) -> dict[str, Any]:
        """The run's settings as plain data: the YAML run config, else the loop and the policy."""
        if self.config is not None:
            return _plain(self.config)
        policy = self.run.policy_config
        if self.run.generation_config is not None:  # recorded where a YAML recipe keeps it: policy.generation
            policy = attrs.evolve(policy, generation=self.run.generation_config)
        return _plain(ComposedRunConfig(policy=policy, loop=self.loop))

    def _settings_section(self) -> str | None:
        """The YAML section holding the algorithm's settings (`grpo:` for a variant that takes GRPO's run config)."""
        if self.config is None:
            return None
        return schedule_section_name(type(self.config), str(getattr(self.config, "algorithm", "")))

    def _log(self, metrics: dict[str, float], step: int) -> None:
        check_logged_metric(self.checkpoints.config, metrics)
        self.last_metrics = metrics
        self.run.logger.log(metrics, step)

    # ------------------------------------------------------------------ checkpoints
    def save(self, step: int, metrics: dict[str, float]) -> Path:
        """Write checkpoint `step`: policy, dataloader, trainer state (JSON + safetensors, no pickle), manifest.

        An asynchronous rollout producer is held meanwhile; the loader state is the trained frontier (the
        producer only reads ahead), so groups generated for later steps are simply generated again on resume.
        """
        if self.run.rollouts is None:
            return self._save(step, metrics)
        with self.run.rollouts.paused():
            return self._save(step, metrics)

    def _save(self, step: int, metrics: dict[str, float]) -> Path:
        run = self.run

        def write(directory: Path) -> None:
            run.policy.save(str(directory / "policy"))
            (directory / "dataloader.json").write_text(json.dumps(run.loader.state_dict()))
            write_trainer_state(directory, self.algorithm.state_dict())

        plain = self._plain_config()
        return self.checkpoints.save(
            step,
            write,
            training_info={
                "step": step,
                "consumed_prompts": step * self.run.loader.batch_size,
                "fingerprint": run_fingerprint(plain, weights=self._weights(plain).digest, section_name=self._settings_section()),
                "model_name": (plain.get("policy") or {}).get("model_name"),  # named when another run resumes from it
                "weights": self._weights(plain).as_dict(),  # digest + stamp: a resume of the same folder need not re-read it
            },
            config_yaml=dump_yaml(self.config) if self.config is not None else dump_yaml(plain),
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
        plain = self._plain_config()
        weights = self._weights(plain, known=info.get("weights"))
        differences = fingerprint_differences(
            info.get("fingerprint") or {}, run_fingerprint(plain, weights=weights.digest, section_name=self._settings_section())
        )
        if differences and self.loop.resume != "force":
            models = ""
            if any(d.startswith(("model:", "weights:")) for d in differences):
                models = (
                    f" It was trained from the model folder {_checkpoint_model(path, info)}; this run loads "
                    f"{(plain.get('policy') or {}).get('model_name')}."
                )
            raise ReinforgeError(
                f"{path} belongs to another run: {'; '.join(differences)}.{models} Nothing was loaded. Use another "
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


def _checkpoint_model(path: Path, info: dict[str, Any]) -> str:
    """The model folder a checkpoint was trained from (older checkpoints: from its verified config.yaml)."""
    if info.get("model_name"):
        return str(info["model_name"])
    import yaml

    try:
        return str(((yaml.safe_load((path / "config.yaml").read_text(encoding="utf-8")) or {}).get("policy") or {}).get("model_name"))
    except (OSError, ValueError, AttributeError, yaml.YAMLError):
        return "(not recorded)"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def _plain(config: Any) -> dict[str, Any]:
    from reinforge.core.config import to_dict

    return to_dict(config)
