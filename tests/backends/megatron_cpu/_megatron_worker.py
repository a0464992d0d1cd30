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
if DEVICE == "cpu":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/backends, for the shim
    from megatron_cpu import cpu_shim

    cpu_shim.install()

from reinforge.backends.training.megatron.backend import MegatronBackend  # noqa: E402
from reinforge.backends.training.megatron.config import MegatronConfig  # noqa: E402
from reinforge.core.run_config import OptimizerConfig, PolicyConfig, SchedulerConfig  # noqa: E402
from reinforge.testing.conformance_training import ConformanceNLLLoss, conformance_batch, naive_logprobs, weights  # noqa: E402

LR = 0.5
MAX_GRAD_NORM = 1.0


def reference_step(model_dir: str, batch) -> tuple[float, float, dict[str, torch.Tensor], torch.Tensor]:  # noqa: ANN001
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
    return loss.item(), norm.item(), {n: p.detach().clone() for n, p in model.named_parameters()}, before


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys(), sorted(a.keys() ^ b.keys())
    return max((a[k] - b[k]).abs().max().item() for k in a)


def main(model_dir: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    if DEVICE == "cuda":
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group("gloo" if DEVICE == "cpu" else "cpu:gloo,cuda:nccl")  # the caller owns the group
    out = Path(out_dir)
    rank = dist.get_rank()
    policy = PolicyConfig(
        model_name=model_dir,
        train_global_batch_size=8,
        train_micro_batch_size=2,
        logprob_batch_size=3,
        max_total_sequence_length=64,
        max_grad_norm=MAX_GRAD_NORM,
        optimizer=OptimizerConfig(name="sgd", lr=LR, weight_decay=0.0),
    )
    batch = conformance_batch(704, rows=8, width=24, seed=1)
    ref_loss, ref_norm, ref_weights, ref_logprobs = reference_step(model_dir, batch)
    results: dict[str, float] = {}

    # (a) tensor parallel over both ranks: each rank sees the whole batch and holds half of each matmul.
    tp = MegatronBackend(policy, MegatronConfig(device=DEVICE, tensor_parallel_size=2, logprob_chunk_size=7))
    qkv = tp.gpt.decoder.layers[0].self_attention.linear_qkv.weight
    results["tp_qkv_rows_per_rank"] = float(qkv.shape[0])
    results["tp_logprobs"] = (tp.logprobs(batch) - ref_logprobs).abs().max().item()
    results["tp_logprobs_hot"] = (tp.logprobs(batch, temperature=0.5) - naive_logprobs(
        _hf(model_dir), batch, temperature=0.5)).abs().max().item()
    metrics = tp.train(batch, ConformanceNLLLoss())
    results["tp_loss"] = abs(metrics["loss"] - ref_loss)
    results["tp_grad_norm"] = abs(metrics["grad_norm"] - ref_norm)
    results["tp_weights"] = max_diff(weights(tp), ref_weights)
    tp.export_hf(str(out / "hf_tp"))
    tp.shutdown()

    # (b) data parallel over both ranks; rank 0 gets rows 0-4, rank 1 rows 5-7 (uneven on purpose).
    mine = batch.select(list(range(5)) if rank == 0 else list(range(5, 8)))
    dp = MegatronBackend(policy, MegatronConfig(device=DEVICE))
    results["dp_size"] = float(dp.grid.dp_size)
    lp = dp.logprobs(mine)
    results["dp_logprobs"] = (lp - ref_logprobs[: 5 if rank == 0 else 8][-len(mine) :]).abs().max().item()
    metrics = dp.train(mine, ConformanceNLLLoss())
    results["dp_loss"] = abs(metrics["loss"] - ref_loss)
    results["dp_grad_norm"] = abs(metrics["grad_norm"] - ref_norm)
    results["dp_rows_metric"] = abs(metrics["rows"] - 8)
    results["dp_microbatches"] = metrics["microbatches"]
    results["dp_weights"] = max_diff(weights(dp), ref_weights)
    dp.shutdown()

    # (c) AdamW + warmup under tensor parallel 2: save, load into a fresh backend, continue identically.
    adamw = attrs.evolve(
        policy,
        optimizer=OptimizerConfig(name="adamw", lr=1e-2, weight_decay=0.01),
        scheduler=SchedulerConfig(name="linear_warmup", warmup_steps=3, warmup_start_factor=0.5),
    )
    options = MegatronConfig(device=DEVICE, tensor_parallel_size=2)
    first = MegatronBackend(adamw, options)
    first.train(batch, ConformanceNLLLoss())
    first.save(str(out / "ckpt"))
    saved = weights(first)
    resumed = MegatronBackend(adamw, options)
    resumed.load(str(out / "ckpt"))
    results["load_weights"] = max_diff(weights(resumed), saved)
    results["load_step"] = abs(resumed.step - first.step)
    next_a = first.train(batch, ConformanceNLLLoss())
    next_b = resumed.train(batch, ConformanceNLLLoss())
    results["load_next_loss"] = abs(next_a["loss"] - next_b["loss"])
    results["load_next_lr"] = abs(next_a["lr"] - next_b["lr"])
    after = weights(first)
    results["load_next_weights"] = max_diff(weights(resumed), after)
    if rank == 0:
        torch.save({"saved": saved, "after": after, "lr": next_a["lr"], "loss": next_a["loss"]}, out / "adamw_weights.pt")
    first.shutdown()
    resumed.shutdown()

    if DEVICE == "cuda":
        gpu_only_checks(policy, batch, mine, results)

    # Each rank measured its own rows: keep the worst of both.
    names = sorted(results)
    worst = torch.tensor([results[n] for n in names], dtype=torch.float64)
    dist.all_reduce(worst, op=dist.ReduceOp.MAX)
    results = dict(zip(names, worst.tolist()))
    if rank == 0:
        exported = _hf(out / "hf_tp")
        results["tp_export_weights"] = max_diff({n: p.detach() for n, p in exported.named_parameters()}, ref_weights)
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
