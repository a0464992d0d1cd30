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

from reinforge.core.checkpoint import CheckpointManager
from reinforge.core.config import dump_yaml
from reinforge.core.interfaces import Algorithm, Environment, GenerationBackend, TrainingBackend
from reinforge.core.registry import Registry
from reinforge.core.run_parts import RunParts, build_run_parts


class Trainer:
    def __init__(self, algorithm: Algorithm, run: RunParts, config: Any) -> None:
        self.algorithm = algorithm
        self.run = run
        self.config = config
        self.checkpoints = CheckpointManager(config.checkpointing)
        self.step = 0
        self.last_metrics: dict[str, float] = {}
        self._last_val: dict[str, float] = {}
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
        try:
            if self.config.checkpointing.enabled and self.config.checkpointing.resume:
                self.resume()
            run.logger.log_config(_plain(self.config))
            if self.step == 0 and algorithm.val_at_start:
                self._log(algorithm.validate(0), 0)
            while self.step < algorithm.max_steps:
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
            last = step == algorithm.max_steps
            period = algorithm.val_period
            if (period and step % period == 0) or (last and algorithm.val_at_end and run.val_prompts):
                self._last_val = algorithm.validate(step)
                metrics.update(self._last_val)
            ckpt = self.config.checkpointing
            if ckpt.enabled and (step % ckpt.save_period == 0 or last):
                with run.timer.phase("checkpoint"):
                    self.save(step, {**self._last_val, **metrics})
        metrics.update(run.timer.pop())
        return metrics

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
            training_info={"step": step, "consumed_prompts": step * self.algorithm.prompts_per_step},
            config_yaml=dump_yaml(self.config),
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


def _seed_everything(seed: int) -> None:
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
