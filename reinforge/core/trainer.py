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

import torch

from reinforge.core.checkpoint import CheckpointManager
from reinforge.core.config import dump_yaml
from reinforge.core.interfaces import Algorithm
from reinforge.core.loop import ComposedRunConfig
from reinforge.core.run import RunParts


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
        algorithm.setup(run)

    # ------------------------------------------------------------------ the loop
    def fit(self) -> dict[str, float]:
        """Train to `max_steps` (resuming from the latest checkpoint when configured); return the last metrics."""
        algorithm, run = self.algorithm, self.run
        try:
            if self.checkpoints.config.enabled and self.loop.resume:
                self.resume()
            run.logger.log_config(self._plain_config())
            if self.step == 0 and self.loop.val_at_start:
                self._log(algorithm.validate(0), 0)
            while self.step < self.loop.max_steps:
                self.step += 1
                metrics = self._one_step(self.step)
                self._log(metrics, self.step)
        finally:
            run.shutdown()
        return self.last_metrics

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
                    self.save(step, {**self._last_val, **metrics})
        metrics.update(run.timer.pop())
        return metrics

    def _plain_config(self) -> dict[str, Any]:
        """The run's settings as plain data: the YAML run config, else the loop and the policy."""
        if self.config is not None:
            return _plain(self.config)
        return _plain(ComposedRunConfig(policy=self.run.policy_config, loop=self.loop))

    def _log(self, metrics: dict[str, float], step: int) -> None:
        self.last_metrics = metrics
        self.run.logger.log(metrics, step)

    # ------------------------------------------------------------------ checkpoints
    def save(self, step: int, metrics: dict[str, float]) -> Path:
        run = self.run

        def write(directory: Path) -> None:
            run.policy.save(str(directory / "policy"))
            (directory / "dataloader.json").write_text(json.dumps(run.loader.state_dict()))
            torch.save(
                {"algorithm": self.algorithm.state_dict(), "rng": _rng_state()},
                directory / "trainer_state.pt",
            )

        return self.checkpoints.save(
            step,
            write,
            training_info={"step": step, "consumed_prompts": step * self.run.loader.batch_size},
            config_yaml=dump_yaml(self.config) if self.config is not None else dump_yaml(self._plain_config()),
            metrics=metrics,
        )

    def resume(self) -> bool:
        """Continue from the latest complete checkpoint, if there is one."""
        path = self.checkpoints.latest_path()
        if path is None:
            return False
        info = self.checkpoints.load_training_info(path)
        self.run.policy.load(str(path / "policy"))
        self.run.loader.load_state_dict(json.loads((path / "dataloader.json").read_text()))
        state = torch.load(path / "trainer_state.pt", weights_only=False)
        self.algorithm.load_state_dict(state["algorithm"])
        _set_rng_state(state["rng"])
        self.step = int(info["step"])
        return True


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "torch": torch.get_rng_state()}


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])


def _plain(config: Any) -> dict[str, Any]:
    from reinforge.core.config import to_dict

    return to_dict(config)
