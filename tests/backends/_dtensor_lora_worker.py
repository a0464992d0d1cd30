"""Run by `test_dtensor_lora.py` under `torchrun --nproc-per-node 2` (gloo, CPU): LoRA with tensor parallel 2.

    python -m torch.distributed.run --nproc-per-node 2 _dtensor_lora_worker.py MODEL_DIR OUT_DIR

Both ranks hold the whole batch and half of every projection (and of its adapter: B split like a
column-parallel W, A like a row-parallel W). Rank 0 writes what the test compares with one process:
logprobs and reference logprobs at the start, the train step's loss and gradient norm, the merged
weights after it, and a checkpoint written by both ranks (which the test loads in one process).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist

from reinforge.backends.training.dtensor.backend import DTensorBackend
from reinforge.backends.training.dtensor.config import DTensorConfig
from reinforge.core.lora_config import LoRAConfig
from reinforge.core.run_config import OptimizerConfig, PolicyConfig
from reinforge.testing.conformance_training import ConformanceNLLLoss, conformance_batch, weights


def lora_policy(model_dir: str) -> PolicyConfig:
    return PolicyConfig(
        model_name=model_dir,
        train_global_batch_size=8,
        train_micro_batch_size=2,
        logprob_batch_size=4,
        max_total_sequence_length=64,
        max_grad_norm=1.0,
        optimizer=OptimizerConfig(name="sgd", lr=0.5, weight_decay=0.0),
        lora=LoRAConfig(enabled=True, dim=4, alpha=8.0),
    )


def lora_batch():  # noqa: ANN201
    return conformance_batch(704, rows=8, width=24, seed=1)


def main(model_dir: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    batch = lora_batch()
    tp = DTensorBackend(lora_policy(model_dir), DTensorConfig(tensor_parallel_size=2, share_prompt_forward=False))
    layer = tp.model.model.layers[0]
    record = {
        "placements": {f"{path}.{name}": [str(p) for p in getattr(layer.get_submodule(path), name).placements]
                       for path in ("self_attn.q_proj", "self_attn.o_proj") for name in ("lora_A", "lora_B")},
        "logprobs": tp.logprobs(batch),
        "reference": tp.reference_logprobs(batch),
    }  # fmt: skip
    metrics = tp.train(batch, ConformanceNLLLoss())
    record.update(loss=metrics["loss"], grad_norm=metrics["grad_norm"], weights=weights(tp), after_reference=tp.reference_logprobs(batch))
    tp.save(str(Path(out_dir) / "ckpt"))
    if dist.get_rank() == 0:
        torch.save(record, Path(out_dir) / "tp.pt")
    tp.shutdown()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
