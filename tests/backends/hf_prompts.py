"""Helpers shared by the `hf` generator's tests: a CPU backend, chat prompts of different lengths, output equality."""

from __future__ import annotations

from pathlib import Path

import torch

from reinforge.backends.generation.hf.backend import HFGenerationBackend
from reinforge.backends.generation.hf.config import HFGenerationConfig
from reinforge.core.batch import Batch
from reinforge.core.run_config import PolicyConfig


def cpu_backend(model_dir: Path, **options) -> HFGenerationBackend:
    return HFGenerationBackend(
        PolicyConfig(model_name=str(model_dir), max_total_sequence_length=96), HFGenerationConfig(device="cpu", **options)
    )


def uneven_prompts(backend: HFGenerationBackend) -> Batch:
    """Three chat-templated questions of different lengths, so left padding differs between rows."""
    questions = ["What is 2 + 3?", "Compute 14 - 9, please.", "7 + 1?"]
    texts = [
        backend.tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
        for q in questions
    ]
    ids = [backend.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    assert len({len(i) for i in ids}) > 1
    return Batch.from_sequences(ids, backend.pad_token_id)


def assert_same_outputs(got: Batch, expected: Batch, *, logprob_atol: float) -> None:
    """The same tokens and lengths, and logprobs within `logprob_atol`."""
    assert torch.equal(got["output_ids"], expected["output_ids"])
    assert torch.equal(got["generation_lengths"], expected["generation_lengths"])
    torch.testing.assert_close(got["generation_logprobs"], expected["generation_logprobs"], atol=logprob_atol, rtol=0)
