"""Run by `test_megatron_pipeline.py` under `torchrun --nproc-per-node 2`: pipeline parallel 2 (gloo, CPU, test-only shim).

    python -m torch.distributed.run --nproc-per-node 2 _megatron_pp_worker.py CASES.pt OUT_DIR

CASES.pt holds, per model, its folder and a GRPO batch the test built. For each model both
ranks (stage 0: embedding + layer 0; stage 1: layer 1 + final norm + output layer) run
logprobs, reference logprobs, one GRPO step, logprobs after it, named_weights, save, export_hf,
then load the checkpoint into a fresh pipeline-parallel backend and take one more step on both.
Rank 0 writes what it saw to OUT_DIR/<model>.pt and the largest difference between what the two
ranks returned (they must return the same: the last stage's values are broadcast) to
OUT_DIR/<model>_ranks.json. The test compares all of it with pipeline parallel 1 in its own process.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

# MEGATRON_WORKER_DEVICE=cuda (tests/gpu): real GPUs with NCCL, no shim.
DEVICE = os.environ.get("MEGATRON_WORKER_DEVICE", "cpu")
if DEVICE == "cpu":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/backends, for the shim
    from megatron_cpu import cpu_shim

    cpu_shim.install()

from megatron_cpu.pipeline_cases import grpo_loss, pipeline_policy  # noqa: E402
from reinforge.backends.training.megatron.backend import MegatronBackend  # noqa: E402
from reinforge.backends.training.megatron.config import MegatronConfig  # noqa: E402
from reinforge.core.batch import Batch  # noqa: E402
from reinforge.testing.conformance_training import weights  # noqa: E402


def run_case(name: str, case: dict, out: Path) -> None:
    rank = dist.get_rank()
    options = MegatronConfig(device=DEVICE, pipeline_parallel_size=2, logprob_chunk_size=5)
    policy = pipeline_policy(case["model_dir"])
    batch = Batch(case["batch"])
    backend = MegatronBackend(policy, options, need_reference=True)
    seen: dict = {
        "stage": backend.grid.pp_rank,
        "layers_here": len(backend.gpt.decoder.layers),
        "logprobs": backend.logprobs(batch),
        "reference_logprobs": backend.reference_logprobs(batch),
    }
    seen["metrics"] = backend.train(batch, grpo_loss())
    seen["after"] = backend.logprobs(Batch(case["after"]))
    seen["weights"] = weights(backend)
    seen["weight_names"] = [n for bucket in backend.named_weights(2**20) for n, _ in bucket]
    backend.save(str(out / f"{name}_ckpt"))
    backend.export_hf(str(out / f"{name}_hf"))

    resumed = MegatronBackend(policy, options)
    resumed.load(str(out / f"{name}_ckpt"))
    seen["resumed_step"] = resumed.step
    seen["resumed_weights"] = weights(resumed)
    seen["next_metrics"] = backend.train(batch, grpo_loss())
    seen["resumed_next_metrics"] = resumed.train(batch, grpo_loss())
    seen["next_weights"] = weights(backend)
    seen["resumed_next_weights"] = weights(resumed)
    backend.shutdown()
    resumed.shutdown()

    # Both ranks must have returned the same values: gather rank 1's and compare on rank 0.
    gathered: list = [None, None]
    dist.all_gather_object(gathered, seen)
    if rank == 0:
        other = gathered[1]
        differences = {
            key: _max_difference(seen[key], other[key])
            for key in ("logprobs", "reference_logprobs", "metrics", "after", "weights", "next_metrics")
        }
        differences["stages"] = [seen["stage"], other["stage"]]
        differences["layers_per_stage"] = [seen["layers_here"], other["layers_here"]]
        (out / f"{name}_ranks.json").write_text(json.dumps(differences, indent=2))
        torch.save({k: v for k, v in seen.items() if k not in ("stage", "layers_here")}, out / f"{name}.pt")


def _max_difference(a, b) -> float:  # noqa: ANN001
    if isinstance(a, torch.Tensor):
        return (a - b).abs().max().item()
    assert a.keys() == b.keys(), sorted(a.keys() ^ b.keys())
    return max(_max_difference(a[k], b[k]) if isinstance(a[k], torch.Tensor) else abs(a[k] - b[k]) for k in a)


def main(cases_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    if DEVICE == "cuda":
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group("gloo" if DEVICE == "cpu" else "cpu:gloo,cuda:nccl")  # the caller owns the group
    cases = torch.load(cases_file, weights_only=True)
    for name in sorted(cases):
        run_case(name, cases[name], Path(out_dir))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
