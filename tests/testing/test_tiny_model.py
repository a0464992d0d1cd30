from __future__ import annotations

import json

import pytest
import torch

from reinforge.core.errors import ReinforgeError
from reinforge.data.arithmetic import make_arithmetic_records
from reinforge.testing import (
    PRESETS,
    SYSTEM_PROMPT,
    WarmupConfig,
    build_model,
    build_tokenizer,
    model_config,
    sample_accuracy,
    warm_up,
    warmup_split,
)
from reinforge.models import tiny_model as tiny_model_module

pytest_plugins = ["reinforge.testing.fixtures"]
pytestmark = pytest.mark.usefixtures("one_torch_thread")

TEXTS = [
    "What is 7 + 12?",
    "Solve for x: 3x + 4 = 19\n\n  indented\tand tabs  ",
    "Ünïcödé, 日本語, emoji 🙂 and it's 1234567.89",
    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nThe answer is \\boxed{19}.<|im_end|><|endoftext|>",
]


def test_reloaded_tokenizer_gives_identical_ids(tiny_model_dir, tiny_tokenizer):
    original = build_tokenizer()
    for text in TEXTS:
        ids = original(text)["input_ids"]
        assert tiny_tokenizer(text)["input_ids"] == ids
        assert tiny_tokenizer.decode(ids) == original.decode(ids)
    # Digits are single tokens (Qwen2's split), which the arithmetic task relies on.
    assert [tiny_tokenizer.decode([i]) for i in tiny_tokenizer("1234")["input_ids"]] == ["1", "2", "3", "4"]
    assert len(tiny_tokenizer) == len(original)


def test_tokenizer_training_is_deterministic():
    assert build_tokenizer().get_vocab() == build_tokenizer().get_vocab()


def test_special_tokens_and_eos(tiny_model_dir, tiny_tokenizer):
    im_end = tiny_tokenizer.convert_tokens_to_ids("<|im_end|>")
    pad = tiny_tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert tiny_tokenizer.eos_token_id == im_end
    assert tiny_tokenizer.pad_token_id == pad
    assert tiny_tokenizer.bos_token_id is None
    assert tiny_tokenizer("<|im_start|>")["input_ids"] == [tiny_tokenizer.convert_tokens_to_ids("<|im_start|>")]
    config = json.loads((tiny_model_dir / "config.json").read_text())
    generation = json.loads((tiny_model_dir / "generation_config.json").read_text())
    assert config["eos_token_id"] == generation["eos_token_id"] == im_end
    assert config["pad_token_id"] == generation["pad_token_id"] == pad
    assert config["model_type"] == "qwen2"


def test_chat_template(tiny_tokenizer):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 7 + 12?"}]
    prompt = tiny_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert prompt == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nWhat is 7 + 12?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    no_system = tiny_tokenizer.apply_chat_template(messages[1:], tokenize=False, add_generation_prompt=False)
    assert no_system == "<|im_start|>user\nWhat is 7 + 12?<|im_end|>\n"
    # The assistant mask covers exactly the response and its <|im_end|> (what SFT trains on).
    conversation = [*messages, {"role": "assistant", "content": "19"}]
    encoded = tiny_tokenizer.apply_chat_template(
        conversation, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    trained = [i for i, m in zip(encoded["input_ids"], encoded["assistant_masks"]) if m]
    assert tiny_tokenizer.decode(trained) == "19<|im_end|>"


@pytest.mark.parametrize(("size", "low", "high"), [("tiny", 0.3e6, 0.6e6), ("small", 10e6, 20e6)])
def test_preset_parameter_counts_and_tensor_parallel_shapes(size, low, high):
    from transformers import Qwen2ForCausalLM

    config = model_config(size, build_tokenizer())
    with torch.device("meta"):
        model = Qwen2ForCausalLM(config)
    assert low <= sum(p.numel() for p in model.parameters()) <= high
    preset = PRESETS[size]
    assert preset.num_attention_heads % 2 == 0 and preset.num_key_value_heads % 2 == 0
    assert config.vocab_size % 2 == 0 and config.vocab_size >= len(build_tokenizer())


def test_model_folder_loads_and_generates(tiny_model_dir, tiny_tokenizer, tiny_model):
    names = {p.name for p in tiny_model_dir.iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json"} <= names
    prompt = tiny_tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 1 + 2?"}], tokenize=False, add_generation_prompt=True
    )
    inputs = tiny_tokenizer([prompt, prompt], return_tensors="pt")
    output = tiny_model.generate(**inputs, max_new_tokens=5, do_sample=True)
    assert output.shape[0] == 2 and 1 <= output.shape[1] - inputs["input_ids"].shape[1] <= 5
    assert torch.equal(output[:, : inputs["input_ids"].shape[1]], inputs["input_ids"])


def test_same_seed_same_weights(tmp_path, tiny_model):
    from transformers import AutoModelForCausalLM

    again = AutoModelForCausalLM.from_pretrained(build_model(tmp_path / "again", size="tiny", seed=0))
    other = AutoModelForCausalLM.from_pretrained(build_model(tmp_path / "other", size="tiny", seed=1))
    weight = "model.layers.0.mlp.up_proj.weight"
    assert torch.equal(again.state_dict()[weight], tiny_model.state_dict()[weight])
    assert not torch.equal(other.state_dict()[weight], tiny_model.state_dict()[weight])


def test_cache_builds_once_and_reuses_the_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("REINFORGE_CACHE", str(tmp_path / "cache"))
    first = build_model(size="tiny", seed=3)
    assert first.parent == tmp_path / "cache" / "models"
    assert json.loads((first / "reinforge_kit.json").read_text())["seed"] == 3

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the cached folder should have been reused")

    monkeypatch.setattr(tiny_model_module, "_write_model", no_rebuild)
    assert build_model(size="tiny", seed=3) == first
    with pytest.raises(AssertionError, match="reused"):
        build_model(size="tiny", seed=4)  # another key: a new folder
    assert [p.name for p in first.parent.iterdir()] == [first.name]  # no staging folder left behind


def test_user_errors(tmp_path):
    with pytest.raises(ReinforgeError, match="unknown tiny-model size 'huge'"):
        build_model(tmp_path / "m", size="huge")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    with pytest.raises(ReinforgeError, match="not empty"):
        build_model(tmp_path / "full")


def test_warm_up_smoke_loss_decreases_and_is_deterministic(tiny_tokenizer):
    from transformers import AutoModelForCausalLM

    from reinforge.models.tiny_tokenizer import build_tokenizer as fresh_tokenizer

    config = WarmupConfig(batch_size=8, num_problems=100, learning_rate=1e-2)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(model_config("tiny", tiny_tokenizer))
        runs.append(warm_up(model, fresh_tokenizer(), steps=12, seed=0, config=config))
    assert runs[0] == runs[1]
    assert sum(runs[0][-3:]) / 3 < runs[0][0] - 1.0


def test_conversation_writes_the_answer_boxed_or_plain():
    from reinforge.models.warmup import conversation

    record = {"problem": "What is 7 + 12?", "answer": "19"}
    boxed = conversation(record, system_prompt=SYSTEM_PROMPT)
    plain = conversation(record, boxed=False)
    assert [m["role"] for m in boxed] == ["system", "user", "assistant"]
    assert boxed[-1]["content"] == "7 + 12 = 19. The answer is \\boxed{19}."
    assert [m["role"] for m in plain] == ["user", "assistant"]
    assert plain[-1]["content"] == "7 + 12 = 19. The answer is 19."
    assert conversation(record, with_answer=False) == [{"role": "user", "content": "What is 7 + 12?"}]


@pytest.mark.parametrize("boxed_probability", [0.0, 1.0])
def test_warm_up_writes_boxes_as_often_as_configured(tiny_tokenizer, monkeypatch, boxed_probability):
    """Every trained conversation is boxed at probability 1 and none at 0 (what the model sees, not what it learns)."""
    from transformers import AutoModelForCausalLM

    from reinforge.models import warmup as warmup_module

    seen: list[torch.Tensor] = []
    collate = warmup_module._collate
    monkeypatch.setattr(warmup_module, "_collate", lambda batch, pad: seen.append(collate(batch, pad)[0]) or collate(batch, pad))
    config = WarmupConfig(batch_size=8, num_problems=40, boxed_probability=boxed_probability)
    model = AutoModelForCausalLM.from_config(model_config("tiny", tiny_tokenizer))
    warm_up(model, tiny_tokenizer, steps=3, seed=0, config=config)
    texts = [tiny_tokenizer.decode(row) for ids in seen for row in ids]
    assert len(texts) == 24
    assert sum("\\boxed{" in t.split("assistant")[-1] for t in texts) == (24 if boxed_probability else 0)


def test_warmup_split_holds_problems_out():
    trained, held_out = warmup_split(WarmupConfig(num_problems=200, heldout_fraction=0.25))
    assert len(held_out) == 50 and len(trained) == 150
    assert not {r["problem"] for r in trained} & {r["problem"] for r in held_out}


class _ScriptedModel:
    """Stands in for a model: "generates" fixed responses, so the scoring can be checked exactly."""

    def __init__(self, tokenizer, responses):
        self.tokenizer, self.responses = tokenizer, responses

    def eval(self):
        return self

    def generate(self, input_ids, attention_mask, max_new_tokens, eos_token_id, pad_token_id, **sampling):
        rows = [self.tokenizer(r, add_special_tokens=False)["input_ids"] for r in self.responses]
        width = max(len(r) for r in rows)
        rows = [r + [pad_token_id] * (width - len(r)) for r in rows]
        return torch.cat([input_ids, torch.tensor(rows)], dim=1)


def test_sample_accuracy_scores_answers_and_format(tiny_tokenizer):
    records = [{"problem": f"What is {i} + 1?", "answer": str(i + 1)} for i in range(4)]
    responses = [
        "0 + 1 = 1. The answer is \\boxed{1}.<|im_end|>",  # correct, well formed
        "1 + 1 = 3. The answer is \\boxed{3}.<|im_end|>",  # wrong, well formed
        "2 + 1 = 3. The answer is \\boxed{3}. 3",  # correct, truncated (no <|im_end|>)
        "The answer is 4.<|im_end|>",  # no box
    ]
    padding_side = tiny_tokenizer.padding_side
    report = sample_accuracy(
        _ScriptedModel(tiny_tokenizer, responses), records, temperature=0, tokenizer=tiny_tokenizer
    )
    assert (report.accuracy, report.format_rate, report.samples) == (0.5, 0.5, 4)
    assert tiny_tokenizer.padding_side == padding_side  # restored after generating with left padding


def test_sample_accuracy_runs_on_a_real_folder(tiny_model_dir):
    records = make_arithmetic_records(3, seed=0)
    report = sample_accuracy(tiny_model_dir, records, n_samples=2, max_new_tokens=4, system_prompt=SYSTEM_PROMPT)
    assert report.samples == 6
    assert 0.0 <= report.accuracy <= 1.0 and 1 <= report.mean_tokens <= 4
