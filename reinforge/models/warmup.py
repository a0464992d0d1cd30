"""Supervised warm-up that turns a random tiny model into a partially competent policy.

Why: GRPO learns from the spread of rewards within a group. A randomly initialised model
never writes a correct `\\boxed{}` answer, so every reward is 0 and there is nothing to learn.
A short next-token warm-up on worked arithmetic conversations gives a policy that gets the
format right and the arithmetic *sometimes* right, which GRPO can then improve on a CPU.

The warm-up is plain PyTorch (AdamW, loss on assistant tokens only) and deterministic for a
seed on a given machine and thread count.
"""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING

import attrs

from reinforge.core.errors import ReinforgeError
from reinforge.data.arithmetic import Record, make_arithmetic_records, split_records, worked_solution

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

# The system prompt that half of the warm-up batches carry, so that the policy answers
# the same way with or without it.
SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."


def _positive(_instance: object, attribute: attrs.Attribute, value: float) -> None:
    if value <= 0:
        raise ReinforgeError(f"warm-up {attribute.name} must be > 0, got {value}")


def _probability(_instance: object, attribute: attrs.Attribute, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ReinforgeError(f"warm-up {attribute.name} must be within [0, 1], got {value}")


@attrs.define(kw_only=True, frozen=True)
class WarmupConfig:
    """How the warm-up trains; the defaults suit the "small" preset (the CPU demo's settings: model_cmd.DEMO_MODEL).

    Measured on 2 CPU cores with operands 0..10, batch 16, lr 1e-3: after 300 steps about 60 % of sampled
    (T=1) answers are right, after 500 steps about 80 % (~0.45 s per step); lr 2e-3 was worse (~30 %).
    """

    # Conversations per optimizer step.
    batch_size: int = attrs.field(default=16, validator=_positive)
    # Peak AdamW learning rate, reached after `warmup_fraction` of the steps, then cosine to 10 %.
    learning_rate: float = attrs.field(default=1e-3, validator=_positive)
    # Share of the steps spent ramping the learning rate up linearly from 0.
    warmup_fraction: float = 0.1
    # AdamW weight decay.
    weight_decay: float = 0.01
    # Gradient-norm clip.
    max_grad_norm: float = 1.0
    # Operators of the training problems ("What is A op B?").
    ops: tuple[str, ...] = attrs.field(default=("+", "-"), converter=tuple)
    # Operands are drawn from 0..max_operand.
    max_operand: int = 15
    # Problem kinds, see `make_arithmetic_records`.
    kinds: tuple[str, ...] = attrs.field(default=("arith",), converter=tuple)
    # Distinct problems drawn for the warm-up, before the held-out share is removed.
    num_problems: int = 392  # every "+" and "-" problem with operands 0..15
    # Share of those problems never trained on (for an honest accuracy, see `warmup_split`).
    heldout_fraction: float = 0.2
    # Probability that a batch's conversations start with `SYSTEM_PROMPT`.
    system_prompt_probability: float = attrs.field(default=0.5, validator=_probability)
    # Probability that a worked answer ends in "The answer is \\boxed{19}." rather than "The answer is 19.".
    # Below 1 the model follows the requested format only sometimes, as real base models do; a reward
    # that requires the box (MathEnvironmentConfig.require_boxed) then has a format to teach.
    boxed_probability: float = attrs.field(default=1.0, validator=_probability)


def warmup_split(config: WarmupConfig | None = None) -> tuple[list[Record], list[Record]]:
    """(trained_on, held_out) problems of the warm-up; both are the same for every seed.

    Evaluate a warmed-up model on `held_out` to measure generalisation, not memorisation.
    """
    config = config or WarmupConfig()
    records = make_arithmetic_records(
        config.num_problems, seed=20_250, ops=config.ops, max_operand=config.max_operand, kinds=config.kinds
    )
    return split_records(records, config.heldout_fraction, seed=20_250)


def conversation(
    record: Record, *, system_prompt: str | None = None, with_answer: bool = True, boxed: bool = True
) -> list[dict[str, str]]:
    """The chat messages for one problem: [system], user problem, [assistant worked solution]."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.append({"role": "user", "content": record["problem"]})
    if with_answer:
        solution = worked_solution(record)
        if not boxed:  # "... The answer is 19." — right, but not in the requested format
            solution = solution.replace(f"\\boxed{{{record['answer']}}}", record["answer"])
        messages.append({"role": "assistant", "content": solution})
    return messages


def _encode(
    records: list[Record], tokenizer: PreTrainedTokenizerBase, system_prompt: str | None, *, boxed: bool = True
) -> list[tuple[list[int], list[int]]]:
    """(input_ids, assistant_mask) for each record's conversation."""
    examples = []
    for record in records:
        encoded = tokenizer.apply_chat_template(
            conversation(record, system_prompt=system_prompt, boxed=boxed),
            tokenize=True,
            return_dict=True,
            return_assistant_tokens_mask=True,
        )
        examples.append((list(encoded["input_ids"]), list(encoded["assistant_masks"])))
    return examples


def _collate(examples: list[tuple[list[int], list[int]]], pad_id: int) -> tuple[torch.Tensor, ...]:
    """Right-padded input_ids [B, T], attention_mask [B, T], and labels [B, T] (-100 off the assistant tokens)."""
    import torch

    width = max(len(ids) for ids, _ in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    for row, (ids, mask) in enumerate(examples):
        n = len(ids)
        input_ids[row, :n] = torch.tensor(ids)
        attention_mask[row, :n] = 1
        keep = torch.tensor(mask, dtype=torch.bool)
        labels[row, :n] = torch.where(keep, torch.tensor(ids), torch.full((n,), -100))
    return input_ids, attention_mask, labels


def warm_up(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    *,
    steps: int,
    seed: int = 0,
    config: WarmupConfig | None = None,
) -> list[float]:
    """Train `model` in place for `steps` AdamW steps; returns the loss of every step."""
    import torch
    import torch.nn.functional as F

    config = config or WarmupConfig()
    rng = random.Random(seed)
    torch.manual_seed(seed)
    train_records, _ = warmup_split(config)
    # Whole batches go with or without the system prompt, so no row is padded by ~20 prompt tokens;
    # each conversation is boxed or not on its own draw. variants[(prompted, boxed)] -> examples.
    variants = {
        (prompted, boxed): _encode(train_records, tokenizer, SYSTEM_PROMPT if prompted else None, boxed=boxed)
        for prompted in (False, True)
        for boxed in (False, True)
        if (config.system_prompt_probability > 0 or not prompted) and (config.boxed_probability < 1 or boxed)
    }
    plain = variants[(False, config.boxed_probability > 0)]
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, betas=(0.9, 0.95), weight_decay=config.weight_decay
    )
    ramp = max(1, round(steps * config.warmup_fraction))

    def lr_factor(step: int) -> float:
        if step < ramp:
            return (step + 1) / ramp
        progress = (step - ramp) / max(1, steps - ramp)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    model.train()
    losses: list[float] = []
    order: list[int] = []
    for _ in range(steps):
        if len(order) < config.batch_size:  # a fresh shuffled epoch
            order += rng.sample(range(len(plain)), len(plain))
        prompted = rng.random() < config.system_prompt_probability
        batch = [variants[(prompted, rng.random() < config.boxed_probability)][i] for i in order[: config.batch_size]]
        order = order[config.batch_size :]
        input_ids, attention_mask, labels = _collate(batch, tokenizer.pad_token_id)
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits  # [B, T, V]
        loss = F.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100
        )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    model.eval()
    return losses
