"""One clipped SGD step of plain Hugging Face in one process: the reference the 2-rank torchrun workers compare against.

Both halves of the `dtensor` and `megatron` torchrun tests:
- the worker side (`_dtensor_worker.py`, `megatron_cpu/_megatron_worker.py`): the reference step, the
  policies, each case's differences from the reference, the checkpoint round trip, and the worst result
  over the ranks. The workers run as scripts under torchrun, not under pytest: they import this module
  as `reference_step`, with tests/backends on sys.path (the dtensor worker's own folder; the megatron
  worker puts it there);
- the test side (`test_dtensor_torchrun.py`, `megatron_cpu/test_megatron_torchrun.py`): run a worker and
  hold its results to tolerances, then check the 2-rank checkpoint in one process.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import attrs
import pytest
import torch
import torch.distributed as dist

from reinforge.core.run_config import OptimizerConfig, PolicyConfig, SchedulerConfig
from reinforge.testing.conformance_training import ConformanceNLLLoss, conformance_batch, naive_logprobs, weights

if TYPE_CHECKING:
    from reinforge.core.batch import Batch
    from reinforge.core.interfaces import TrainingBackend

VOCAB = 704  # <= the tiny model's vocabulary
LR = 0.5
MAX_GRAD_NORM = 1.0
RESUME_FILE = "adamw_weights.pt"  # what the workers' checkpoint round trip leaves for the single-process test
STEP_RESULTS = ("logprobs", "loss", "grad_norm", "weights")  # a case's differences from the reference step
ROUND_TRIP_TOLERANCES = dict.fromkeys(  # checkpoint_round_trip's results: a reloaded backend continues exactly
    ("load_weights", "load_step", "load_next_loss", "load_next_lr", "load_next_weights"), 0.0
)


# ------------------------------------------------------------------ the worker side
def reference_batch() -> Batch:
    """The 8 rows of 24 tokens every worker trains on (and the test trains its reloaded checkpoint on)."""
    return conformance_batch(VOCAB, rows=8, width=24, seed=1)


def sgd_policy(model_dir: str | Path) -> PolicyConfig:
    """The step `reference_step` takes (SGD at LR, clipped at MAX_GRAD_NORM), in microbatches of 2 rows."""
    return PolicyConfig(
        model_name=str(model_dir), train_global_batch_size=8, train_micro_batch_size=2, logprob_batch_size=3,
        max_total_sequence_length=64, max_grad_norm=MAX_GRAD_NORM, optimizer=OptimizerConfig(name="sgd", lr=LR, weight_decay=0.0),
    )  # fmt: skip


def adamw_policy(model_dir: str | Path) -> PolicyConfig:
    """For checkpoints: AdamW with warmup, so the optimizer's moments and the lr depend on the restored state."""
    return attrs.evolve(
        sgd_policy(model_dir),
        optimizer=OptimizerConfig(name="adamw", lr=1e-2, weight_decay=0.01),
        scheduler=SchedulerConfig(name="linear_warmup", warmup_steps=3, warmup_start_factor=0.5),
    )


class Reference(NamedTuple):
    """One clipped SGD step on the full batch, in one process."""

    loss: float
    grad_norm: float
    weights: dict[str, torch.Tensor]  # after the step
    logprobs: torch.Tensor  # [B, T], before the step


def reference_step(model_dir: str, batch: Batch) -> Reference:
    """Loss, grad norm, weights after one clipped SGD step, and the initial logprobs, in one process."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    before = naive_logprobs(model, batch)  # [B, T]
    ids, lengths = batch["input_ids"], batch["input_lengths"]
    attention = (torch.arange(ids.shape[1])[None, :] < lengths[:, None]).long()
    logits = model(input_ids=ids, attention_mask=attention).logits.float()  # [B, T, V]
    logprobs = torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None]).squeeze(-1)  # [B, T-1]
    mask = (batch["token_mask"] * batch["sample_mask"][:, None])[:, 1:]  # [B, T-1]
    loss = -(logprobs * mask).sum() / mask.sum()
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
    with torch.no_grad():
        for param in model.parameters():
            param -= LR * param.grad
    return Reference(loss.item(), norm.item(), {n: p.detach().clone() for n, p in model.named_parameters()}, before)


def max_diff(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> float:
    """The largest absolute difference between two state dicts with the same names."""
    assert a.keys() == b.keys(), sorted(a.keys() ^ b.keys())
    return max((a[k] - b[k]).abs().max().item() for k in a)


def uneven_rows(rank: int) -> list[int]:
    """A data-parallel rank's rows of the 8: rank 0 rows 0-4, rank 1 rows 5-7 (uneven on purpose: rank 1 runs a dummy pass)."""
    return list(range(5)) if rank == 0 else list(range(5, 8))


def step_differences(name: str, backend: TrainingBackend, metrics: Mapping[str, float], reference: Reference) -> dict[str, float]:
    """NAME_loss, NAME_grad_norm, NAME_weights: how far a train step's `metrics` and `backend`'s weights are from the reference."""
    return {
        f"{name}_loss": abs(metrics["loss"] - reference.loss),
        f"{name}_grad_norm": abs(metrics["grad_norm"] - reference.grad_norm),
        f"{name}_weights": max_diff(weights(backend), reference.weights),
    }


def checkpoint_round_trip(
    build: Callable[[], TrainingBackend], batch: Batch, out: Path, results: dict[str, float]
) -> dict[str, torch.Tensor]:
    """Train a step, save to OUT/ckpt, load into a fresh backend: the next step must be identical on both.

    Adds the `load_*` differences to `results`; rank 0 leaves RESUME_FILE for the single-process test.
    Returns the saved weights.
    """
    first = build()
    first.train(batch, ConformanceNLLLoss())
    first.save(str(out / "ckpt"))
    saved = weights(first)
    resumed = build()
    resumed.load(str(out / "ckpt"))
    results["load_weights"] = max_diff(weights(resumed), saved)
    results["load_step"] = abs(resumed.step - first.step)
    next_a = first.train(batch, ConformanceNLLLoss())
    next_b = resumed.train(batch, ConformanceNLLLoss())
    results["load_next_loss"] = abs(next_a["loss"] - next_b["loss"])
    results["load_next_lr"] = abs(next_a["lr"] - next_b["lr"])
    after = weights(first)
    results["load_next_weights"] = max_diff(weights(resumed), after)
    if dist.get_rank() == 0:
        torch.save({"saved": saved, "after": after, "lr": next_a["lr"], "loss": next_a["loss"]}, out / RESUME_FILE)
    first.shutdown()
    resumed.shutdown()
    return saved


def worst_over_ranks(results: dict[str, float]) -> dict[str, float]:
    """Each rank measured its own rows: every rank gets each result's largest value over all ranks."""
    names = sorted(results)
    worst = torch.tensor([results[n] for n in names], dtype=torch.float64)
    dist.all_reduce(worst, op=dist.ReduceOp.MAX)
    return dict(zip(names, worst.tolist()))


# ------------------------------------------------------------------ the test side
def run_reference_worker(worker: Path, tmp_path: Path, tolerances: Mapping[str, float], *, timeout: float) -> tuple[Path, Path, dict]:
    """Build the tiny model, run `WORKER MODEL_DIR OUT_DIR` on 2 ranks, and hold every result to its tolerance.

    Returns the model folder, the worker's output folder and its results.json.
    """
    from reinforge.models.tiny_model import build_model
    from tests.torchrun import run_torchrun  # here, not above: the workers import this module without `tests`

    model_dir = build_model(tmp_path / "model", size="tiny", seed=0)
    out = tmp_path / "out"
    out.mkdir()
    run_torchrun([str(worker), str(model_dir), str(out)], timeout=timeout)
    results = json.loads((out / "results.json").read_text())
    assert results.keys() >= tolerances.keys(), sorted(tolerances.keys() - results.keys())
    too_far = {k: results[k] for k, tol in tolerances.items() if not results[k] <= tol}
    assert not too_far, f"2-process results differ from the reference: {too_far}"
    return model_dir, out, results


def assert_resumes_like_the_ranks(single: TrainingBackend, out: Path) -> None:
    """`single` (one process) has loaded the 2 ranks' OUT/ckpt: it holds their weights and trains on as they did."""
    expected = torch.load(out / RESUME_FILE, weights_only=True)
    assert max_diff(weights(single), expected["saved"]) == 0.0
    metrics = single.train(reference_batch(), ConformanceNLLLoss())
    assert metrics["lr"] == pytest.approx(expected["lr"]) and metrics["loss"] == pytest.approx(expected["loss"], abs=1e-5)
    assert max_diff(weights(single), expected["after"]) <= 1e-5
