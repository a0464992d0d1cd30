"""Prompt building with a word-level tokenizer built here, so token counts can be worked by hand.

The tokenizer splits on whitespace and treats the ChatML markers as single tokens, so under
`DEFAULT_CHAT_TEMPLATE` a one-message prompt of n words is n + 5 tokens:
<|im_start|> user <n words> <|im_end|> <|im_start|> assistant.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from reinforge.core.errors import ReinforgeError
from reinforge.data.prompts import (
    DEFAULT_CHAT_TEMPLATE,
    PromptConfig,
    build_prompts,
    ensure_chat_template,
    load_prompt_template,
)

WORDS = "user assistant system What is 2 + 2? 1 3 4 5 6 7 8 9 Be brief. Q: A: Think".split()


def make_tokenizer(chat_template: str | None = DEFAULT_CHAT_TEMPLATE) -> PreTrainedTokenizerFast:
    vocab = {"[UNK]": 0, "<pad>": 1, "<|im_start|>": 2, "<|im_end|>": 3}
    for word in WORDS:
        vocab.setdefault(word, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        unk_token="[UNK]",
        pad_token="<pad>",
        eos_token="<|im_end|>",
        additional_special_tokens=["<|im_start|>"],
    )
    tokenizer.chat_template = chat_template
    return tokenizer


RECORDS = [
    {"problem": "What is 2 + 2?", "answer": "4", "index": 0},  # 5 words
    {"problem": "1 2 3 4 5 6 7 8", "answer": "9", "index": 1},  # 8 words
]


def test_raw_problem_prompt_is_tokenized_once_with_the_generation_prompt() -> None:
    tokenizer = make_tokenizer()
    prompts, stats = build_prompts(RECORDS, tokenizer, PromptConfig(prompt_file=None, max_prompt_length=100))
    first = prompts[0]
    assert first["messages"] == [{"role": "user", "content": "What is 2 + 2?"}]
    ids = tokenizer.convert_tokens_to_ids
    expected = ["<|im_start|>", "user", "What", "is", "2", "+", "2?", "<|im_end|>", "<|im_start|>", "assistant"]
    assert first["input_ids"] == ids(expected)
    assert first["metadata"] == {"problem": "What is 2 + 2?", "answer": "4", "index": 0, "prompt_truncated": False}
    assert stats == {"records": 2, "prompts": 2, "dropped_overlong": 0, "truncated_overlong": 0, "max_prompt_tokens": 13}


def test_system_prompt_and_builtin_templates() -> None:
    config = PromptConfig(prompt_file="cot", system_prompt="Be brief.", max_prompt_length=100)
    prompts, _ = build_prompts(RECORDS[:1], make_tokenizer(), config)
    assert prompts[0]["messages"] == [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            # The DeepScaleR recipe's template: the model sees two backslashes, as it did there.
            "content": "Think step-by-step to solve the following problem. Output your answer inside of \\\\boxed{} tags.:\n"
            "What is 2 + 2?\n\nLet's think step-by-step",
        },
    ]
    assert load_prompt_template("math").format("P") == (
        "Solve the following math problem. Make sure to put the answer (and only answer) inside \\\\boxed{}.\n\nP"
    )


def test_prompt_file_path_and_bad_templates(tmp_path: Path) -> None:
    good = tmp_path / "qa.txt"
    good.write_text("Q: {} A:")
    prompts, _ = build_prompts(RECORDS[:1], make_tokenizer(), PromptConfig(prompt_file=str(good), max_prompt_length=100))
    assert prompts[0]["messages"][0]["content"] == "Q: What is 2 + 2? A:"

    named = tmp_path / "named.txt"
    named.write_text("Q: {problem} in \\boxed{}")
    with pytest.raises(ReinforgeError, match=r"exactly one \{\}.*\['problem', ''\]"):
        load_prompt_template(str(named))
    with pytest.raises(ReinforgeError, match="missing.txt.*does not exist.*cot, math"):
        load_prompt_template(str(tmp_path / "missing.txt"))


@pytest.mark.parametrize("on_overlong", ["drop", "truncate"])
def test_overlong_prompts_are_dropped_or_truncated_and_counted(on_overlong: str) -> None:
    tokenizer = make_tokenizer()
    full, _ = build_prompts(RECORDS, tokenizer, PromptConfig(prompt_file=None, max_prompt_length=100))
    assert [len(p["input_ids"]) for p in full] == [10, 13]  # 5 + 5 and 8 + 5

    config = PromptConfig(prompt_file=None, max_prompt_length=10, on_overlong=on_overlong)
    prompts, stats = build_prompts(RECORDS, tokenizer, config)
    if on_overlong == "drop":
        assert [p["metadata"]["index"] for p in prompts] == [0]
        assert stats["dropped_overlong"] == 1 and stats["truncated_overlong"] == 0 and stats["prompts"] == 1
    else:
        long_ids = full[1]["input_ids"]
        assert prompts[1]["input_ids"] == long_ids[:5] + long_ids[-5:]  # the start, and the end with the generation prompt
        assert prompts[1]["input_ids"][-3:] == tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|im_start|>", "assistant"])
        assert [p["metadata"]["prompt_truncated"] for p in prompts] == [False, True]
        assert stats["truncated_overlong"] == 1 and stats["dropped_overlong"] == 0 and stats["prompts"] == 2
    assert stats["max_prompt_tokens"] == 10


def test_missing_chat_template_is_a_user_error_with_a_way_out() -> None:
    tokenizer = make_tokenizer(chat_template=None)
    with pytest.raises(ReinforgeError, match="no chat template.*ensure_chat_template"):
        build_prompts(RECORDS, tokenizer, PromptConfig())
    ensure_chat_template(tokenizer, use_default=True)
    assert tokenizer.chat_template == DEFAULT_CHAT_TEMPLATE
    prompts, _ = build_prompts(RECORDS, tokenizer, PromptConfig(prompt_file=None))
    assert len(prompts) == 2


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="on_overlong"):
        PromptConfig(on_overlong="cut")
    with pytest.raises(ValueError, match="max_prompt_length"):
        PromptConfig(max_prompt_length=0)


def test_with_the_tiny_model_kit_bpe_tokenizer() -> None:
    """End to end with a real byte-level BPE and ChatML template (the tokenizer of reinforge.testing's tiny model)."""
    kit = pytest.importorskip("reinforge.models.tiny_tokenizer")
    tokenizer = kit.build_tokenizer()
    config = PromptConfig(prompt_file="math", system_prompt="Be brief.", max_prompt_length=200)
    prompts, stats = build_prompts([{"problem": "What is 7 + 12?", "answer": "19"}], tokenizer, config)
    assert tokenizer.decode(prompts[0]["input_ids"]) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nSolve the following math problem. Make sure to put "
        "the answer (and only answer) inside \\\\boxed{}.\n\nWhat is 7 + 12?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert stats["max_prompt_tokens"] == len(prompts[0]["input_ids"])


def test_example_turns_sit_between_system_and_problem() -> None:
    from reinforge.core.run_config import ChatTurn

    turns = (ChatTurn(role="user", content="What is 1 + 3?"), ChatTurn(role="assistant", content="4"))
    config = PromptConfig(prompt_file=None, system_prompt="Be brief.", example_turns=turns, max_prompt_length=100)
    prompts, _ = build_prompts(RECORDS[:1], make_tokenizer(), config)
    assert prompts[0]["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 1 + 3?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "What is 2 + 2?"},
    ]
    ids = make_tokenizer().convert_tokens_to_ids
    # each message is <|im_start|> role <words> <|im_end|>: system 2 words, example 5 and 1, problem 5; then the
    # generation prompt's 2 tokens
    assert len(prompts[0]["input_ids"]) == (2 + 3) + (5 + 3) + (1 + 3) + (5 + 3) + 2
    assert prompts[0]["input_ids"][-2:] == ids(["<|im_start|>", "assistant"])


@pytest.mark.parametrize("roles", [("assistant", "user"), ("user",), ("user", "assistant", "user")])
def test_example_turns_must_be_whole_user_assistant_pairs(roles: tuple[str, ...]) -> None:
    from reinforge.core.run_config import ChatTurn

    with pytest.raises(ValueError, match="must alternate user and assistant"):
        PromptConfig(example_turns=tuple(ChatTurn(role=r, content="x") for r in roles))


def test_example_turns_from_a_recipe_override() -> None:
    from reinforge.core.load import load_config
    from tests.integration.grpo_helpers import REPO

    recipe = REPO / "examples" / "configs" / "grpo-arith-cpu.yaml"
    config = load_config(recipe, ["data.example_turns=[{role: user, content: 'What is 1 + 1?'}, {role: assistant, content: '2'}]"])
    assert [(t.role, t.content) for t in config.data.example_turns] == [("user", "What is 1 + 1?"), ("assistant", "2")]
    with pytest.raises(ReinforgeError, match="must alternate user and assistant"):
        load_config(recipe, ["data.example_turns=[{role: assistant, content: '2'}]"])


def test_a_prompt_files_final_newline_is_not_part_of_the_prompt(tmp_path: Path) -> None:
    path = tmp_path / "prompt.txt"
    path.write_text("Q: {}\n\n", encoding="utf-8")  # an editor's trailing newlines
    prompts, _ = build_prompts(RECORDS[:1], make_tokenizer(), PromptConfig(prompt_file=str(path), max_prompt_length=100))
    assert prompts[0]["messages"] == [{"role": "user", "content": "Q: What is 2 + 2?"}]
