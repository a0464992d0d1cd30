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

import torch
import torch.distributed as dist

from reinforge.backends.training.dtensor.backend import DTensorBackend
from reinforge.backends.training.dtensor.checkpointing import dcp_to_hf
from reinforge.backends.training.dtensor.config import DTensorConfig
from reinforge.testing.conformance_training import ConformanceNLLLoss, grouped_batch, weights
# tests/backends/reference_step.py: this script's folder is on sys.path
from reference_step import VOCAB, adamw_policy, checkpoint_round_trip, max_diff, reference_batch, reference_step
from reference_step import sgd_policy, step_differences, uneven_rows, worst_over_ranks


def main(model_dir: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo")  # the caller owns the group, as a Ray worker would
    out = Path(out_dir)
    policy = sgd_policy(model_dir)
    batch = reference_batch()
    reference = reference_step(model_dir, batch)
    results: dict[str, float] = {}

    # (a) FSDP2 over both ranks; rank 0 gets rows 0-4, rank 1 rows 5-7 (uneven on purpose).
    fsdp = DTensorBackend(policy, DTensorConfig(share_prompt_forward=False))
    rank = dist.get_rank()
    assert fsdp.ctx.fsdp and fsdp.ctx.dp_size == 2, fsdp.ctx
    assert type(fsdp.model.model.embed_tokens.weight).__name__ == "DTensor"
    rows = uneven_rows(rank)
    mine = batch.select(rows)
    lp = fsdp.logprobs(mine)
    # 1 if a parameter stayed all-gathered after the no-grad forward (it must be resharded).
    results["fsdp_unsharded_after_logprobs"] = float(any(type(p).__name__ != "DTensor" for p in fsdp.model.parameters()))
    results["fsdp_logprobs"] = (lp - reference.logprobs[rows]).abs().max().item()
    metrics = fsdp.train(mine, ConformanceNLLLoss())
    results.update(step_differences("fsdp", fsdp, metrics, reference))
    results["fsdp_rows_metric"] = abs(metrics["rows"] - 8)
    results["fsdp_microbatches"] = metrics["microbatches"]

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
        expected_lp = reference.logprobs[rows]
        if options.lm_head_positions == "response":
            expected_lp = torch.where(mine["token_mask"].bool(), expected_lp, 0.0)
        results[f"{name}_logprobs"] = (lp - expected_lp).abs().max().item()
        results.update(step_differences(name, variant, variant.train(mine, ConformanceNLLLoss()), reference))
        variant.shutdown()

    # (a'') and (b''): shared prompts. 4 prompts x 2 rows; under FSDP rank 0 holds rows 0-4, so prompt 2's
    # rows are split between the ranks (each runs that prompt once), and token budgets differ per rank.
    grouped = grouped_batch(VOCAB, prompts=4, group=2, seed=5)
    g_loss, g_norm, g_weights, g_logprobs = reference_step(model_dir, grouped)
    g_expected = torch.where(grouped["token_mask"].bool(), g_logprobs, 0.0)
    shared_cases = {
        "fsdp_shared": (DTensorConfig(share_prompt_forward=True, microbatching="token_budget", max_tokens_per_microbatch=30), rows),
        "tp_shared": (DTensorConfig(tensor_parallel_size=2, share_prompt_forward=True), list(range(8))),
        # 2 rows a pass: rank 0 runs 3 shared passes, rank 1 runs 2 and then an idle pass, which must call the
        # decoder twice as a shared pass does (FSDP gathers weights per call; one call hung here).
        "fsdp_shared_uneven": (DTensorConfig(share_prompt_forward=True), rows),
    }
    for name, (options, its_rows) in shared_cases.items():
        variant = DTensorBackend(policy, options)
        part = grouped.select(its_rows)
        results[f"{name}_logprobs"] = (variant.logprobs(part) - g_expected[its_rows]).abs().max().item()
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
    adamw = adamw_policy(model_dir)
    saved = checkpoint_round_trip(
        lambda: DTensorBackend(adamw, DTensorConfig(share_prompt_forward=False)), batch.shard(rank, 2), out, results
    )

    # (b) tensor parallel over both ranks: each rank sees the whole batch.
    tp = DTensorBackend(policy, DTensorConfig(tensor_parallel_size=2, share_prompt_forward=False))
    assert tp.ctx.tp_size == 2 and not tp.ctx.fsdp, tp.ctx
    q_proj = tp.model.model.layers[0].self_attn.q_proj.weight
    assert type(q_proj).__name__ == "DTensor" and q_proj.to_local().shape[0] * 2 == q_proj.shape[0]
    results["tp_logprobs"] = (tp.logprobs(batch) - reference.logprobs).abs().max().item()
    results.update(step_differences("tp", tp, tp.train(batch, ConformanceNLLLoss()), reference))
    tp.shutdown()

    # (b') tensor parallel with packed rows and the head at response positions only.
    tp = DTensorBackend(
        policy,
        DTensorConfig(tensor_parallel_size=2, sequence_packing=True, max_tokens_per_microbatch=40, lm_head_positions="response"),
    )
    response = batch["token_mask"].bool()
    results["tp_packed_logprobs"] = (tp.logprobs(batch) - torch.where(response, reference.logprobs, 0.0)).abs().max().item()
    results.update(step_differences("tp_packed", tp, tp.train(batch, ConformanceNLLLoss()), reference))
    tp.shutdown()

    # (e) plain data parallel (fsdp off): replicated weights, gradients summed over the ranks.
    replicated = DTensorBackend(policy, DTensorConfig(fsdp=False, share_prompt_forward=False))
    assert not replicated.ctx.fsdp and replicated.ctx.dp_size == 2
    metrics = replicated.train(mine, ConformanceNLLLoss())
    results["ddp_grad_norm"] = abs(metrics["grad_norm"] - reference.grad_norm)
    results["ddp_weights"] = max_diff(weights(replicated), reference.weights)
    replicated.shutdown()

    # (d) both at once: FSDP2 on the (here 1-rank) "dp" mesh over tensor-parallel DTensors (2-D placements).
    both = DTensorBackend(policy, DTensorConfig(tensor_parallel_size=2, fsdp=True, share_prompt_forward=False))
    assert both.ctx.fsdp and both.model.model.layers[0].self_attn.q_proj.weight.device_mesh.ndim == 2
    metrics = both.train(batch, ConformanceNLLLoss())
    results["tp_fsdp_grad_norm"] = abs(metrics["grad_norm"] - reference.grad_norm)
    results["tp_fsdp_weights"] = max_diff(weights(both), reference.weights)
    both.shutdown()

    results = worst_over_ranks(results)
    if rank == 0:
        from transformers import AutoModelForCausalLM

        exported = AutoModelForCausalLM.from_pretrained(out / "hf", dtype=torch.float32)
        results["export_weights"] = max_diff({n: p.detach() for n, p in exported.named_parameters()}, reference.weights)
        converted = dcp_to_hf(out / "ckpt", model_dir, out / "converted")
        reloaded = AutoModelForCausalLM.from_pretrained(converted, dtype=torch.float32)
        results["dcp_to_hf_weights"] = max_diff({n: p.detach() for n, p in reloaded.named_parameters()}, saved)
        (out / "results.json").write_text(json.dumps(results, indent=2))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
