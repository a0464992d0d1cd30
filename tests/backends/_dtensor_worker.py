"""Run by `test_dtensor_torchrun.py` under `torchrun --nproc-per-node 2` (gloo, CPU).

    python -m torch.distributed.run --nproc-per-node 2 _dtensor_worker.py MODEL_DIR OUT_DIR

Every check compares the 2-process backend with a single-process reference computed here from
the plain Hugging Face model on the FULL batch (same SGD step, same clipping); rank 0 writes the
largest differences to OUT_DIR/results.json, which the test asserts on.
(a) FSDP2 over 2 data-parallel ranks, rows split unevenly (5 + 3: rank 1 runs a dummy microbatch);
(a'') FSDP2 and (b'') tensor parallel 2 with shared prompts (GRPO-like groups, one split across the ranks;
    once with fewer passes on rank 1, which then runs an idle shared pass);
(b) tensor parallel 2: logprobs and one train step; (d) tensor parallel 2 under FSDP2 (2-D DTensors); (e) data parallel without FSDP;
(c) AdamW: save under torchrun, load into a fresh backend, continue identically; export_hf, dcp_to_hf
    (and the test then loads the 2-rank checkpoint in one process).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import attrs
import torch
import torch.distributed as dist

from reinforge.backends.training.dtensor.backend import DTensorBackend
from reinforge.backends.training.dtensor.checkpointing import dcp_to_hf
from reinforge.backends.training.dtensor.config import DTensorConfig
from reinforge.core.run_config import OptimizerConfig, PolicyConfig, SchedulerConfig
from reinforge.testing.conformance_training import (
    ConformanceNLLLoss,
    conformance_batch,
    grouped_batch,
    naive_logprobs,
    weights,
)

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
    dist.init_process_group("gloo")  # the caller owns the group, as a Ray worker would
    out = Path(out_dir)
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

    # (a) FSDP2 over both ranks; rank 0 gets rows 0-4, rank 1 rows 5-7 (uneven on purpose).
    fsdp = DTensorBackend(policy, DTensorConfig(share_prompt_forward=False))
    rank = dist.get_rank()
    assert fsdp.ctx.fsdp and fsdp.ctx.dp_size == 2, fsdp.ctx
    assert type(fsdp.model.model.embed_tokens.weight).__name__ == "DTensor"
    mine = batch.select(list(range(5)) if rank == 0 else list(range(5, 8)))
    lp = fsdp.logprobs(mine)
    # 1 if a parameter stayed all-gathered after the no-grad forward (it must be resharded).
    results["fsdp_unsharded_after_logprobs"] = float(any(type(p).__name__ != "DTensor" for p in fsdp.model.parameters()))
    results["fsdp_logprobs"] = (lp - ref_logprobs[: 5 if rank == 0 else 8][-len(mine) :]).abs().max().item()
    metrics = fsdp.train(mine, ConformanceNLLLoss())
    results["fsdp_loss"] = abs(metrics["loss"] - ref_loss)
    results["fsdp_grad_norm"] = abs(metrics["grad_norm"] - ref_norm)
    results["fsdp_rows_metric"] = abs(metrics["rows"] - 8)
    results["fsdp_microbatches"] = metrics["microbatches"]
    results["fsdp_weights"] = max_diff(weights(fsdp), ref_weights)

    fsdp.export_hf(str(out / "hf"))
    fsdp.shutdown()

    # (a') The same FSDP step with packed rows and the head at response positions only, and with
    # token-budget microbatches: the two ranks run different numbers of passes (dummy passes pair them).
    variants = {
        "fsdp_packed": DTensorConfig(sequence_packing=True, max_tokens_per_microbatch=40, lm_head_positions="response"),
        "fsdp_token_budget": DTensorConfig(share_prompt_forward=False, microbatching="token_budget", max_tokens_per_microbatch=30),
    }
    for name, options in variants.items():
        variant = DTensorBackend(policy, options)
        lp = variant.logprobs(mine)
        expected_lp = ref_logprobs[: 5 if rank == 0 else 8][-len(mine) :]
        if options.lm_head_positions == "response":
            expected_lp = torch.where(mine["token_mask"].bool(), expected_lp, 0.0)
        results[f"{name}_logprobs"] = (lp - expected_lp).abs().max().item()
        metrics = variant.train(mine, ConformanceNLLLoss())
        results[f"{name}_loss"] = abs(metrics["loss"] - ref_loss)
        results[f"{name}_grad_norm"] = abs(metrics["grad_norm"] - ref_norm)
        results[f"{name}_weights"] = max_diff(weights(variant), ref_weights)
        variant.shutdown()

    # (a'') and (b''): shared prompts. 4 prompts x 2 rows; under FSDP rank 0 holds rows 0-4, so prompt 2's
    # rows are split between the ranks (each runs that prompt once), and token budgets differ per rank.
    grouped = grouped_batch(704, prompts=4, group=2, seed=5)
    g_loss, g_norm, g_weights, g_logprobs = reference_step(model_dir, grouped)
    g_expected = torch.where(grouped["token_mask"].bool(), g_logprobs, 0.0)
    g_rows = list(range(5)) if rank == 0 else list(range(5, 8))
    shared_cases = {
        "fsdp_shared": (DTensorConfig(share_prompt_forward=True, microbatching="token_budget", max_tokens_per_microbatch=30), g_rows),
        "tp_shared": (DTensorConfig(tensor_parallel_size=2, share_prompt_forward=True), list(range(8))),
        # 2 rows a pass: rank 0 runs 3 shared passes, rank 1 runs 2 and then an idle pass, which must call the
        # decoder twice as a shared pass does (FSDP gathers weights per call; one call hung here).
        "fsdp_shared_uneven": (DTensorConfig(share_prompt_forward=True), g_rows),
    }
    for name, (options, rows) in shared_cases.items():
        variant = DTensorBackend(policy, options)
        part = grouped.select(rows)
        results[f"{name}_logprobs"] = (variant.logprobs(part) - g_expected[rows]).abs().max().item()
        metrics = variant.train(part, ConformanceNLLLoss())
        results[f"{name}_loss"] = abs(metrics["loss"] - g_loss)
        # Relative (norm ~4.7, measured 3e-6 apart): a shared prompt's gradient is summed over its rows in
        # another order than the padded path's, and float32 sums keep ~7 digits.
        results[f"{name}_grad_norm_rel"] = abs(metrics["grad_norm"] - g_norm) / g_norm
        results[f"{name}_microbatches"] = metrics["microbatches"]
        results[f"{name}_weights"] = max_diff(weights(variant), g_weights)
        variant.shutdown()

    # (c) AdamW + warmup (optimizer moments and the lr depend on restored state): save under torchrun,
    # load into a fresh backend, and the next step is identical. The test reloads it in one process.
    adamw = attrs.evolve(
        policy,
        optimizer=OptimizerConfig(name="adamw", lr=1e-2, weight_decay=0.01),
        scheduler=SchedulerConfig(name="linear_warmup", warmup_steps=3, warmup_start_factor=0.5),
    )
    half = batch.shard(rank, 2)
    first = DTensorBackend(adamw, DTensorConfig(share_prompt_forward=False))
    first.train(half, ConformanceNLLLoss())
    first.save(str(out / "ckpt"))
    saved = weights(first)
    resumed = DTensorBackend(adamw, DTensorConfig(share_prompt_forward=False))
    resumed.load(str(out / "ckpt"))
    results["load_weights"] = max_diff(weights(resumed), saved)
    results["load_step"] = abs(resumed.step - first.step)
    next_a = first.train(half, ConformanceNLLLoss())
    next_b = resumed.train(half, ConformanceNLLLoss())
    results["load_next_loss"] = abs(next_a["loss"] - next_b["loss"])
    results["load_next_lr"] = abs(next_a["lr"] - next_b["lr"])
    after = weights(first)
    results["load_next_weights"] = max_diff(weights(resumed), after)
    if rank == 0:
        torch.save({"saved": saved, "after": after, "lr": next_a["lr"], "loss": next_a["loss"]}, out / "adamw_weights.pt")
    first.shutdown()
    resumed.shutdown()

    # (b) tensor parallel over both ranks: each rank sees the whole batch.
    tp = DTensorBackend(policy, DTensorConfig(tensor_parallel_size=2, share_prompt_forward=False))
    assert tp.ctx.tp_size == 2 and not tp.ctx.fsdp, tp.ctx
    q_proj = tp.model.model.layers[0].self_attn.q_proj.weight
    assert type(q_proj).__name__ == "DTensor" and q_proj.to_local().shape[0] * 2 == q_proj.shape[0]
    results["tp_logprobs"] = (tp.logprobs(batch) - ref_logprobs).abs().max().item()
    metrics = tp.train(batch, ConformanceNLLLoss())
    results["tp_loss"] = abs(metrics["loss"] - ref_loss)
    results["tp_grad_norm"] = abs(metrics["grad_norm"] - ref_norm)
    results["tp_weights"] = max_diff(weights(tp), ref_weights)
    tp.shutdown()

    # (b') tensor parallel with packed rows and the head at response positions only.
    tp = DTensorBackend(
        policy,
        DTensorConfig(tensor_parallel_size=2, sequence_packing=True, max_tokens_per_microbatch=40, lm_head_positions="response"),
    )
    response = batch["token_mask"].bool()
    results["tp_packed_logprobs"] = (tp.logprobs(batch) - torch.where(response, ref_logprobs, 0.0)).abs().max().item()
    metrics = tp.train(batch, ConformanceNLLLoss())
    results["tp_packed_loss"] = abs(metrics["loss"] - ref_loss)
    results["tp_packed_grad_norm"] = abs(metrics["grad_norm"] - ref_norm)
    results["tp_packed_weights"] = max_diff(weights(tp), ref_weights)
    tp.shutdown()

    # (e) plain data parallel (fsdp off): replicated weights, gradients summed over the ranks.
    replicated = DTensorBackend(policy, DTensorConfig(fsdp=False, share_prompt_forward=False))
    assert not replicated.ctx.fsdp and replicated.ctx.dp_size == 2
    metrics = replicated.train(mine, ConformanceNLLLoss())
    results["ddp_grad_norm"] = abs(metrics["grad_norm"] - ref_norm)
    results["ddp_weights"] = max_diff(weights(replicated), ref_weights)
    replicated.shutdown()

    # (d) both at once: FSDP2 on the (here 1-rank) "dp" mesh over tensor-parallel DTensors (2-D placements).
    both = DTensorBackend(policy, DTensorConfig(tensor_parallel_size=2, fsdp=True, share_prompt_forward=False))
    assert both.ctx.fsdp and both.model.model.layers[0].self_attn.q_proj.weight.device_mesh.ndim == 2
    metrics = both.train(batch, ConformanceNLLLoss())
    results["tp_fsdp_grad_norm"] = abs(metrics["grad_norm"] - ref_norm)
    results["tp_fsdp_weights"] = max_diff(weights(both), ref_weights)
    both.shutdown()

    # Each rank measured its own rows: keep the worst of both.
    names = sorted(results)
    worst = torch.tensor([results[n] for n in names], dtype=torch.float64)
    dist.all_reduce(worst, op=dist.ReduceOp.MAX)
    results = dict(zip(names, worst.tolist()))
    if rank == 0:
        from transformers import AutoModelForCausalLM

        exported = AutoModelForCausalLM.from_pretrained(out / "hf", dtype=torch.float32)
        results["export_weights"] = max_diff({n: p.detach() for n, p in exported.named_parameters()}, ref_weights)
        converted = dcp_to_hf(out / "ckpt", model_dir, out / "converted")
        reloaded = AutoModelForCausalLM.from_pretrained(converted, dtype=torch.float32)
        results["dcp_to_hf_weights"] = max_diff({n: p.detach() for n, p in reloaded.named_parameters()}, saved)
        (out / "results.json").write_text(json.dumps(results, indent=2))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
