"""Run by `test_megatron_torchrun.py` under `torchrun --nproc-per-node 2` (gloo, CPU, with the test-only shim).

    python -m torch.distributed.run --nproc-per-node 2 _megatron_worker.py MODEL_DIR OUT_DIR

Every check compares the 2-process megatron backend with a single-process reference computed
here from the plain Hugging Face model on the FULL batch (one clipped SGD step); rank 0 writes the
largest differences to OUT_DIR/results.json, which the test asserts on.
(a) tensor parallel 2: logprobs, one train step, gathered weights, export_hf;
(b) data parallel 2 with uneven rows (5 + 3: rank 1 runs a dummy microbatch), Megatron DDP;
(c) AdamW + warmup under tensor parallel 2: save, load into a fresh backend, continue identically
    (the test then loads this checkpoint with tensor parallel 1 in one process: Megatron reshards).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import attrs
import torch
import torch.distributed as dist

# MEGATRON_WORKER_DEVICE=cuda (tests/gpu): real GPUs with NCCL, no shim, plus the GPU-only checks.
DEVICE = os.environ.get("MEGATRON_WORKER_DEVICE", "cpu")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/backends: the shim and reference_step
if DEVICE == "cpu":
    from megatron_cpu import cpu_shim

    cpu_shim.install()

from reinforge.backends.training.megatron.backend import MegatronBackend  # noqa: E402
from reinforge.backends.training.megatron.config import MegatronConfig  # noqa: E402
from reinforge.core.run_config import OptimizerConfig  # noqa: E402
from reinforge.testing.conformance_training import ConformanceNLLLoss, naive_logprobs, weights  # noqa: E402
from reference_step import adamw_policy, checkpoint_round_trip, max_diff, reference_batch, reference_step  # noqa: E402
from reference_step import sgd_policy, step_differences, uneven_rows, worst_over_ranks  # noqa: E402


def main(model_dir: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    if DEVICE == "cuda":
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group("gloo" if DEVICE == "cpu" else "cpu:gloo,cuda:nccl")  # the caller owns the group
    out = Path(out_dir)
    rank = dist.get_rank()
    policy = sgd_policy(model_dir)
    batch = reference_batch()
    reference = reference_step(model_dir, batch)
    results: dict[str, float] = {}

    # (a) tensor parallel over both ranks: each rank sees the whole batch and holds half of each matmul.
    tp = MegatronBackend(policy, MegatronConfig(device=DEVICE, tensor_parallel_size=2, logprob_chunk_size=7))
    qkv = tp.gpt.decoder.layers[0].self_attention.linear_qkv.weight
    results["tp_qkv_rows_per_rank"] = float(qkv.shape[0])
    results["tp_logprobs"] = (tp.logprobs(batch) - reference.logprobs).abs().max().item()
    results["tp_logprobs_hot"] = (tp.logprobs(batch, temperature=0.5) - naive_logprobs(
        _hf(model_dir), batch, temperature=0.5)).abs().max().item()
    results.update(step_differences("tp", tp, tp.train(batch, ConformanceNLLLoss()), reference))
    tp.export_hf(str(out / "hf_tp"))
    tp.shutdown()

    # (b) data parallel over both ranks; rank 0 gets rows 0-4, rank 1 rows 5-7 (uneven on purpose).
    rows = uneven_rows(rank)
    mine = batch.select(rows)
    dp = MegatronBackend(policy, MegatronConfig(device=DEVICE))
    results["dp_size"] = float(dp.grid.dp_size)
    results["dp_logprobs"] = (dp.logprobs(mine) - reference.logprobs[rows]).abs().max().item()
    metrics = dp.train(mine, ConformanceNLLLoss())
    results.update(step_differences("dp", dp, metrics, reference))
    results["dp_rows_metric"] = abs(metrics["rows"] - 8)
    results["dp_microbatches"] = metrics["microbatches"]
    dp.shutdown()

    # (c) AdamW + warmup under tensor parallel 2: save, load into a fresh backend, continue identically.
    adamw, options = adamw_policy(model_dir), MegatronConfig(device=DEVICE, tensor_parallel_size=2)
    checkpoint_round_trip(lambda: MegatronBackend(adamw, options), batch, out, results)

    if DEVICE == "cuda":
        gpu_only_checks(policy, batch, mine, results)

    results = worst_over_ranks(results)
    if rank == 0:
        exported = _hf(out / "hf_tp")
        results["tp_export_weights"] = max_diff({n: p.detach() for n, p in exported.named_parameters()}, reference.weights)
        (out / "results.json").write_text(json.dumps(results, indent=2))
    dist.barrier()
    dist.destroy_process_group()


def gpu_only_checks(policy, batch, mine, results) -> None:  # noqa: ANN001
    """The distributed optimizer (AdamW state sharded over 2 data-parallel ranks) must match replicated AdamW;
    sequence parallel (Transformer Engine layers) must match plain tensor parallel."""
    adam = attrs.evolve(policy, optimizer=OptimizerConfig(name="adamw", lr=1e-2, weight_decay=0.01))
    runs = {}
    for sharded in (False, True):
        backend = MegatronBackend(adam, MegatronConfig(device="cuda", use_distributed_optimizer=sharded))
        norms = [backend.train(mine, ConformanceNLLLoss())["grad_norm"] for _ in range(2)]
        runs[sharded] = (norms, weights(backend))
        backend.shutdown()
    results["distopt_grad_norm"] = max(abs(a - b) for a, b in zip(runs[True][0], runs[False][0]))
    results["distopt_weights"] = max_diff(runs[True][1], runs[False][1])
    try:
        import transformer_engine  # noqa: F401
    except ImportError:
        results["sequence_parallel_skipped"] = 1.0
        return
    plain = MegatronBackend(adam, MegatronConfig(device="cuda", tensor_parallel_size=2, transformer_impl="transformer_engine"))
    expected = plain.logprobs(batch)
    plain.shutdown()
    sp = MegatronBackend(adam, MegatronConfig(device="cuda", tensor_parallel_size=2, sequence_parallel=True))
    results["sequence_parallel_logprobs"] = (sp.logprobs(batch) - expected).abs().max().item()
    sp.shutdown()


def _hf(model_dir):  # noqa: ANN001, ANN202
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
