"""The backend author's kit: what a training or generation backend needs to honour its contract.

The contracts are the protocols in `reinforge.core.interfaces` (what a call takes and returns)
and `reinforge.core.constructors` (how a backend is built). The built-in backends use these
same helpers, so a third-party backend that uses them behaves like the built-ins: the same
checks, the same error messages, the same output layout.

Generation backends (`generate(batch, sampling) -> batch`):

- `check_prompts(batch, sampling, max_total_sequence_length, backend=NAME)` validates the input
  (non-empty, right-padded `input_ids` with their `input_lengths`, room for `max_new_tokens`)
  and raises the user-facing `ReinforgeError`s; `prompt_lists(...)` returns the prompts as
  token lists, padding stripped.
- An engine's samples as `Completion(response, logprobs, truncated)`, one per sample (each
  prompt's `n` samples adjacent); `apply_stop_strings` cuts them at text stop strings;
  `assemble_batch(batch, prompts, completions, n, pad_id)` builds every output column
  (`output_ids`, the lengths, `generation_logprobs`, `truncated`) and repeats the input's other
  columns alongside (`carried_columns`).
- `sample_seeds(seed, prompts, n)`: one seed per sample, so a prompt's copies differ.
- Refit: `plan_buckets` / `send_in_buckets` move named tensors in buckets of about
  `bucket_bytes`, never the whole model; `check_weights` compares names and shapes.
- Left/right padding for engines that want left-padded prompts: `to_left_padded`,
  `left_to_right_padded`.
- `cache_keyword(model)`: the keyword a Hugging Face model takes a KV cache under (`cache` since
  transformers 5.2x, `past_key_values` before); the `hf` generator and the `dtensor` trainer's shared
  prompts both pass one.
- `own_weights(model)`: copy a freshly loaded model's CPU tensors out of the checkpoint file's memory
  mapping, into memory the process owns (both built-in loaders call it right after `from_pretrained`).

Training backends (`train(batch, loss_fn) -> metrics`, `logprobs`, `named_weights`, ...):

- `lr_multiplier(scheduler, step)`: the learning-rate schedules of `policy.scheduler`
  (constant, linear warmup, cosine), as factors on the peak lr.
- `require_single_process(backend)`: call it in the constructor of a backend without data
  parallelism, so `cluster.training_workers > 1` fails at once instead of training drifting
  copies that all write the same checkpoint.
- `reinforge convert` calls the backend class's `checkpoint_to_hf(dcp_dir, model_name, out_dir,
  tokenizer_dir=None)` (a staticmethod; see the dtensor backend) to turn a checkpoint into a
  Hugging Face folder; without it the backend's checkpoints cannot be converted.
"""

from __future__ import annotations

import os

import torch

from reinforge.backends.generation.engine_common import (
    Completion,
    apply_stop_strings,
    assemble_batch,
    check_model_folder,
    check_weights,
    cut_at_stop_strings,
    eos_token_ids,
    plan_buckets,
    prompt_lists,
    sample_seeds,
    send_in_buckets,
)
from reinforge.backends.generation.sampling_utils import carried_columns, check_prompts, left_to_right_padded, to_left_padded
from reinforge.backends.training.lr_schedule import lr_multiplier
from reinforge.core.errors import ReinforgeError

__all__ = [
    "Completion",
    "apply_stop_strings",
    "assemble_batch",
    "carried_columns",
    "check_model_folder",
    "check_prompts",
    "check_weights",
    "cache_keyword",
    "cut_at_stop_strings",
    "eos_token_ids",
    "left_to_right_padded",
    "lr_multiplier",
    "own_weights",
    "plan_buckets",
    "prompt_lists",
    "require_single_process",
    "sample_seeds",
    "send_in_buckets",
    "to_left_padded",
]


def cache_keyword(module: object) -> str:
    """The keyword a Hugging Face model (or its decoder) takes a KV cache under: `cache` (transformers >= 5.2x),
    else `past_key_values`."""
    import inspect

    return "cache" if "cache" in inspect.signature(module.forward).parameters else "past_key_values"


def own_weights(module: torch.nn.Module) -> None:
    """Give every CPU parameter and buffer of a freshly loaded `module` its own memory, away from the checkpoint file.

    Why: when a safetensors file's dtype is the one asked for, transformers returns tensors that are
    a private memory mapping of the file. Two costs follow. The first write into each page takes a
    copy-on-write fault: on SmolLM2-135M (540 MB of float32) the `hf` generator's first refit after a
    generate took 1.5-1.7 s instead of 0.04-0.06 s, and the trainer's first optimizer step pays the
    same. And pages not yet written still read the file, so a checkpoint rewritten in place under a
    running job (an export into the folder it was loaded from) changes those weights, or kills the
    process with SIGBUS if the file was truncated. One copy at load (about 0.3 s for SmolLM2) removes
    both. Parameters keep their identity (tied weights stay tied; optimizers built later see them).
    """
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            if tensor.device.type == "cpu":
                tensor.data = tensor.data.clone()


def require_single_process(backend: str) -> None:
    """Fail when this process is one rank of several (the Ray executor sets WORLD_SIZE for training workers)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1:
        raise ReinforgeError(
            f"the training backend '{backend}' has no data parallelism, but it was started as one of {world_size} "
            "training workers: each would train its own drifting copy. Set cluster.training_workers=1, or use a "
            "backend that shards the batch across ranks (e.g. dtensor)"
        )
