"""Settings shared by the pipeline-parallel worker (2 processes) and the test that compares it with one process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from megatron_cpu.helpers import policy
from reinforge.algorithms.losses_pg import ClippedPGLoss, ClippedPGLossConfig
from reinforge.core.run_config import OptimizerConfig, PolicyConfig, SchedulerConfig
from reinforge.testing.conformance_training import conformance_batch, naive_logprobs

VOCAB = 704


def pipeline_policy(model_dir: str | Path) -> PolicyConfig:
    """AdamW with warmup and clipping that acts; 3-row microbatches, so 8 rows give passes of 3, 3 and 2 rows."""
    return policy(
        Path(model_dir),
        train_global_batch_size=9,
        train_micro_batch_size=3,
        logprob_batch_size=3,
        max_grad_norm=0.5,
        optimizer=OptimizerConfig(name="adamw", lr=1e-3, weight_decay=0.01),
        scheduler=SchedulerConfig(name="linear_warmup", warmup_steps=4, warmup_start_factor=0.5),
    )


def grpo_loss() -> ClippedPGLoss:
    return ClippedPGLoss(ClippedPGLossConfig(ratio_clip_min=0.2, ratio_clip_max=0.28, reference_policy_kl_penalty=0.01))


def grpo_case(model_dir: Path, seed: int = 0) -> dict[str, Any]:
    """The model folder, a GRPO batch (off-policy prev logprobs, so the clip acts) and a batch to score after the step."""
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    batch = conformance_batch(VOCAB, rows=8, width=24, seed=seed)
    generator = torch.Generator().manual_seed(seed + 100)
    batch["advantages"] = torch.randn(8, generator=generator)
    current = naive_logprobs(hf, batch)
    batch["prev_logprobs"] = current + 0.05 * torch.randn(current.shape, generator=generator)
    batch["generation_logprobs"] = batch["prev_logprobs"].clone()
    batch["reference_logprobs"] = current
    after = conformance_batch(VOCAB, rows=5, width=30, seed=seed + 7)
    return {"model_dir": str(model_dir), "batch": dict(batch.items()), "after": dict(after.items())}


def run_worker(worker: Path, cases: dict[str, dict[str, Any]], out: Path, **env: str) -> None:
    """Write the cases next to `out` and run `worker` under torchrun with 2 processes (gloo on CPU unless env says cuda)."""
    from tests.torchrun import run_torchrun  # here: the worker imports this module without `tests` on its path

    cases_file = out / "cases.pt"
    torch.save(cases, cases_file)
    run_torchrun([str(worker), str(cases_file), str(out)], timeout=600, env=env)

def _worst(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys(), sorted(a.keys() ^ b.keys())
    return max((a[k] - b[k]).abs().max().item() for k in a)


def compare_with_one_stage(
    name: str, case: dict[str, Any], out: Path, *, device: str, atol: float, loss_atol: float = 1e-6
) -> None:
    """Assert that what the 2 pipeline stages returned (out/<name>.pt) is what one stage computes here.

    `atol` bounds logprob and weight differences (summation order only); the step's loss must
    agree to `loss_atol`, the grad norm to relative max(1e-5, loss_atol); the checkpoint round trip must be exact.
    """
    import json

    import pytest
    from transformers import AutoModelForCausalLM

    from reinforge.backends.training.megatron.backend import MegatronBackend
    from reinforge.backends.training.megatron.config import MegatronConfig
    from reinforge.core.batch import Batch
    from reinforge.testing.conformance_training import weights

    ranks = json.loads((out / f"{name}_ranks.json").read_text())
    assert ranks.pop("stages") == [0, 1] and ranks.pop("layers_per_stage") == [1, 1]
    assert ranks == dict.fromkeys(ranks, 0.0), f"the two pipeline stages returned different values: {ranks}"
    seen = torch.load(out / f"{name}.pt", weights_only=True)
    batch, after = Batch(case["batch"]), Batch(case["after"])
    options = MegatronConfig(device=device, logprob_chunk_size=5)
    single = MegatronBackend(pipeline_policy(case["model_dir"]), options, need_reference=True)
    try:
        torch.testing.assert_close(seen["logprobs"], single.logprobs(batch), atol=atol, rtol=0)
        torch.testing.assert_close(seen["reference_logprobs"], single.reference_logprobs(batch), atol=atol, rtol=0)
        expected = single.train(batch, grpo_loss())
        assert expected["grad_norm"] > 0.5  # clipping acted (max_grad_norm 0.5)
        assert seen["metrics"].keys() == expected.keys()
        assert seen["metrics"]["loss"] == pytest.approx(expected["loss"], abs=loss_atol)
        assert seen["metrics"]["grad_norm"] == pytest.approx(expected["grad_norm"], rel=max(1e-5, loss_atol))
        assert seen["metrics"]["microbatches"] == expected["microbatches"] == 3
        for key in expected:
            assert seen["metrics"][key] == pytest.approx(expected[key], rel=1e-4, abs=loss_atol), key
        torch.testing.assert_close(seen["after"], single.logprobs(after), atol=2 * atol, rtol=0)
        assert seen["weight_names"] == [n for bucket in single.named_weights(2**20) for n, _ in bucket]
        assert _worst(seen["weights"], weights(single)) < atol
    finally:
        single.shutdown()

    # The checkpoint: resumed on 2 stages exactly, loaded by one stage exactly (Megatron reshards the
    # pipeline), converted offline, and the export_hf folder holds the same tensors.
    assert seen["resumed_step"] == 1
    assert _worst(seen["resumed_weights"], seen["weights"]) == 0.0
    assert seen["resumed_next_metrics"] == seen["next_metrics"]
    assert _worst(seen["resumed_next_weights"], seen["next_weights"]) == 0.0
    reloaded = MegatronBackend(pipeline_policy(case["model_dir"]), options)
    try:
        reloaded.load(str(out / f"{name}_ckpt"))
        assert reloaded.step == 1 and _worst(weights(reloaded), seen["weights"]) == 0.0
    finally:
        reloaded.shutdown()
    converted = MegatronBackend.checkpoint_to_hf(out / f"{name}_ckpt", case["model_dir"], out / f"{name}_converted")
    for folder in (out / f"{name}_hf", converted):
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        assert _worst({n: p.detach() for n, p in model.named_parameters()}, seen["weights"]) == 0.0, folder
