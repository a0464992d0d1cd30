"""Measure how often a model folder answers arithmetic problems correctly, and in format.

Why: the warm-up is tuned to a target band of accuracy (partially competent, so GRPO has
something to improve), and demos report accuracy before and after training. This is the
one measurement both use: plain HF `generate` over chat-formatted prompts.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from reinforge.data.arithmetic import Record, extract_boxed
from reinforge.models.tiny_tokenizer import IM_END
from reinforge.models.warmup import conversation

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

# A well-formed answer: the response ends with a \boxed{...} (optionally a full stop) and then <|im_end|>.
_FORMAT_RE = re.compile(r"\\boxed\{[^{}]*\}\.?\s*$")


@attrs.define(kw_only=True, frozen=True)
class AccuracyReport:
    """What `sample_accuracy` measured over every (problem, sample) pair."""

    # Share of samples whose last \boxed{} holds the exact gold answer.
    accuracy: float
    # Share of samples that end in \boxed{...} followed by <|im_end|> (not truncated).
    format_rate: float
    # Number of samples scored (problems x n_samples).
    samples: int
    # Mean number of generated tokens per sample (including <|im_end|>).
    mean_tokens: float
    # A few decoded responses, for eyeballing.
    examples: tuple[str, ...] = ()


def sample_accuracy(
    model_dir: str | Path | PreTrainedModel,
    records: list[Record],
    *,
    n_samples: int = 1,
    temperature: float = 1.0,
    max_new_tokens: int = 40,
    system_prompt: str | None = None,
    batch_size: int = 64,
    seed: int = 0,
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> AccuracyReport:
    """Sample `n_samples` responses per problem and score them; `temperature=0` means greedy.

    Sampling is pure (top_k=0, top_p=1), so T=1.0 measures the policy GRPO starts from.
    `model_dir` may also be a loaded model, then pass its `tokenizer`.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if isinstance(model_dir, (str, Path)):
        model = AutoModelForCausalLM.from_pretrained(model_dir)
        tokenizer = tokenizer or AutoTokenizer.from_pretrained(model_dir)
    else:
        model = model_dir
        if tokenizer is None:
            raise TypeError("pass tokenizer= when model_dir is a loaded model")
    model.eval()
    padding_side, tokenizer.padding_side = tokenizer.padding_side, "left"  # generation needs left padding
    try:
        return _score(model, tokenizer, records, n_samples, temperature, max_new_tokens, system_prompt, batch_size, seed)
    finally:
        tokenizer.padding_side = padding_side


def _score(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    records: list[Record],
    n_samples: int,
    temperature: float,
    max_new_tokens: int,
    system_prompt: str | None,
    batch_size: int,
    seed: int,
) -> AccuracyReport:
    import torch

    im_end = tokenizer.convert_tokens_to_ids(IM_END)
    jobs = [record for record in records for _ in range(n_samples)]
    correct = well_formed = generated = 0
    examples: list[str] = []
    torch.manual_seed(seed)
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start : start + batch_size]
        prompts = [
            tokenizer.apply_chat_template(
                conversation(r, system_prompt=system_prompt, with_answer=False),
                tokenize=False,
                add_generation_prompt=True,
            )
            for r in chunk
        ]
        inputs = tokenizer(prompts, return_tensors="pt", padding=True)
        sampling = {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0}
        with torch.no_grad():
            output = model.generate(
                **inputs,
                max_new_tokens=max_new_tokens,
                eos_token_id=im_end,
                pad_token_id=tokenizer.pad_token_id,
                **(sampling if temperature > 0 else {"do_sample": False}),
            )
        responses = output[:, inputs["input_ids"].shape[1] :]  # [b, new]
        for record, ids in zip(chunk, responses.tolist()):
            ended = im_end in ids
            ids = ids[: ids.index(im_end)] if ended else ids
            generated += len(ids) + int(ended)
            text = tokenizer.decode(ids, skip_special_tokens=True)
            correct += extract_boxed(text) == record["answer"]
            well_formed += ended and bool(_FORMAT_RE.search(text))
            if len(examples) < 5:
                examples.append(text)
    total = max(1, len(jobs))
    return AccuracyReport(
        accuracy=correct / total,
        format_rate=well_formed / total,
        samples=len(jobs),
        mean_tokens=generated / total,
        examples=tuple(examples),
    )
