"""SFT: assistant-only masking through the real chat template, and a falling validation loss on CPU."""

from __future__ import annotations

import json

import pytest
from transformers import AutoTokenizer

from reinforge.data.conversations import encode_conversation, to_messages
from reinforge.core.errors import ReinforgeError
from reinforge.core.load import load_config
from reinforge.plotting import read_metrics
from reinforge.trainer import Trainer
from tests.integration.grpo_helpers import REPO

CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is 2 + 2?"},
    {"role": "assistant", "content": "4"},
    {"role": "user", "content": "And 3 + 3?"},
    {"role": "assistant", "content": "6"},
]


def assistant_text(tokenizer, ids, mask):
    return tokenizer.decode([t for t, m in zip(ids, mask) if m])


def test_only_assistant_tokens_count(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    ids, mask = encode_conversation(tokenizer, CONVERSATION, only_final=False)
    assert assistant_text(tokenizer, ids, mask) == "4<|im_end|>6<|im_end|>"
    ids, mask = encode_conversation(tokenizer, CONVERSATION, only_final=True)
    assert assistant_text(tokenizer, ids, mask) == "6<|im_end|>"


def _without_generation_markers(tokenizer):
    """The same template with its {% generation %} markers removed (as most released models' templates are)."""
    plain = AutoTokenizer.from_pretrained(tokenizer.name_or_path)
    plain.chat_template = tokenizer.chat_template.replace("{%- generation -%}", "").replace("{%- endgeneration -%}", "")
    assert "generation -%}" not in plain.chat_template
    return plain


@pytest.mark.parametrize(
    "conversation",
    [
        CONVERSATION,
        CONVERSATION[1:3],
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there.\nTwo lines."}],
        [*CONVERSATION[:3], {"role": "user", "content": "Thanks"}, {"role": "assistant", "content": ""}, {"role": "user", "content": "?"}, {"role": "assistant", "content": "ok"}],
    ],
)
def test_a_template_without_generation_markers_gives_the_same_mask_by_prefixes(tiny_model_dir, conversation):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    plain = _without_generation_markers(tokenizer)
    for only_final in (False, True):
        expected = encode_conversation(tokenizer, conversation, only_final=only_final)
        assert encode_conversation(plain, conversation, only_final=only_final) == expected


def test_a_template_that_does_not_append_messages_is_a_clear_error(tiny_model_dir):
    plain = _without_generation_markers(AutoTokenizer.from_pretrained(tiny_model_dir))
    # Writes the number of messages first: a shorter conversation is never a prefix of a longer one.
    plain.chat_template = "{{ messages | length }}" + plain.chat_template
    with pytest.raises(ReinforgeError, match="cannot be told apart"):
        encode_conversation(plain, CONVERSATION, only_final=False)
    with pytest.raises(ReinforgeError, match="no assistant message"):
        encode_conversation(plain, CONVERSATION[:2], only_final=False)


def test_record_shapes_and_bad_records():
    assert to_messages({"input": "a", "output": "b"})[1] == {"role": "assistant", "content": "b"}
    assert to_messages({"problem": "p", "generated_solution": "s"})[0]["content"] == "p"
    with pytest.raises(ReinforgeError, match="needs `messages`"):
        to_messages({"question": "?"})


@pytest.mark.integration
def test_sft_cpu_recipe_lowers_the_validation_loss(tiny_model_dir, tmp_path):
    overrides = [
        f"policy.model_name={tiny_model_dir}",
        "sft.max_num_steps=15",
        "sft.val_period=15",
        f"logger.log_dir={tmp_path / 'logs'}",
        "logger.loggers=[jsonl]",
        f"checkpointing.checkpoint_dir={tmp_path / 'ckpt'}",
        "policy.optimizer.lr=3e-3",
    ]
    config = load_config(REPO / "examples" / "configs" / "sft-arith-cpu.yaml", overrides)
    Trainer.from_config(config).fit()
    table = read_metrics(tmp_path / "logs")  # step -> that step's metrics
    val = {step: row["val/loss"] for step, row in table.items() if "val/loss" in row}
    assert list(val) == [0, 15] and val[15] < 0.7 * val[0], val
    assert (tmp_path / "ckpt" / "step_15").is_dir()


@pytest.mark.integration
def test_sft_trains_on_a_messages_file(tiny_model_dir, tmp_path):
    """The generic file reader end to end: JSONL chat records -> sft_jsonl -> two SFT steps and a validation loss."""
    rows = [{"messages": [{"role": "user", "content": f"What is {i} + 1?"}, {"role": "assistant", "content": f"{i + 1}"}]} for i in range(12)]
    path = tmp_path / "chat.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    overrides = [
        f"policy.model_name={tiny_model_dir}",
        "sft.max_num_steps=2",
        "policy.train_global_batch_size=4",
        "policy.train_micro_batch_size=2",
        "data.dataset=sft_jsonl",
        f"data.dataset_cfg={{path: {path}, max_samples: 8, cache_dir: {tmp_path / 'hf'}}}",
        "data.val_dataset=sft_jsonl",
        f"data.val_dataset_cfg={{path: {path}, seed: 1, max_samples: 4, cache_dir: {tmp_path / 'hf'}}}",
        f"logger.log_dir={tmp_path / 'logs'}",
        "logger.loggers=[jsonl]",
        "checkpointing.enabled=false",
    ]
    trainer = Trainer.from_config(load_config(REPO / "examples" / "configs" / "sft-arith-cpu.yaml", overrides))
    expected = initial_nll(tiny_model_dir, trainer.run.val_prompts)
    metrics = trainer.fit()
    table = read_metrics(tmp_path / "logs")
    assert list(table) == [0, 1, 2]
    # Before any update the validation loss is the initial model's NLL per assistant token, computed here
    # with plain transformers over the same 4 encoded conversations.
    assert table[0]["val/loss"] == pytest.approx(expected, rel=1e-5)
    assert metrics["val/loss"] == table[2]["val/loss"] < table[0]["val/loss"]  # two steps at the recipe's learning rate lower it


def initial_nll(model_dir, items) -> float:
    """Token-weighted NLL of the untrained model over SFT items ({"input_ids", "mask"}), in float64."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    total, tokens = 0.0, 0.0
    with torch.no_grad():
        for item in items:
            ids = torch.tensor([item["input_ids"]])
            logprobs = torch.log_softmax(model(ids).logits[0, :-1].double(), dim=-1)  # [T-1, V]: predicts ids[1:]
            picked = logprobs.gather(1, ids[0, 1:, None])[:, 0]  # [T-1]
            mask = torch.tensor(item["mask"][1:], dtype=torch.float64)
            total -= float((picked * mask).sum())
            tokens += float(mask.sum())
    return total / tokens
