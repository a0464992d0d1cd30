"""`policy.chat_template`: keep the tokenizer's template, fall back to ChatML, or load a Jinja file."""

from __future__ import annotations

import pytest

from reinforge.core.errors import ReinforgeError
from reinforge.compose import apply_chat_template_option
from reinforge.data.prompts import DEFAULT_CHAT_TEMPLATE

pytest_plugins = ["reinforge.testing.fixtures"]

MESSAGES = [{"role": "user", "content": "What is 2 + 2?"}]


@pytest.fixture
def bare_tokenizer(tiny_tokenizer):
    """The kit's tokenizer with its chat template removed, like a base model's."""
    template = tiny_tokenizer.chat_template
    tiny_tokenizer.chat_template = None
    yield tiny_tokenizer
    tiny_tokenizer.chat_template = template


def test_null_keeps_the_tokenizers_own_template(tiny_tokenizer):
    template = tiny_tokenizer.chat_template
    apply_chat_template_option(tiny_tokenizer, None)
    assert tiny_tokenizer.chat_template == template


def test_null_without_a_template_is_a_user_error_naming_the_option(bare_tokenizer):
    with pytest.raises(ReinforgeError, match="policy.chat_template=default"):
        apply_chat_template_option(bare_tokenizer, None)


def test_default_gives_chatml(bare_tokenizer):
    apply_chat_template_option(bare_tokenizer, "default")
    assert bare_tokenizer.chat_template == DEFAULT_CHAT_TEMPLATE
    text = bare_tokenizer.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n<|im_start|>assistant\n"


def test_a_jinja_file_replaces_the_template(bare_tokenizer, tmp_path):
    path = tmp_path / "plain.jinja"
    path.write_text("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}", encoding="utf-8")
    apply_chat_template_option(bare_tokenizer, str(path))
    assert bare_tokenizer.apply_chat_template(MESSAGES, tokenize=False) == "user: What is 2 + 2?\n"


def test_a_missing_file_is_a_user_error(bare_tokenizer, tmp_path):
    with pytest.raises(ReinforgeError, match="neither null, 'default', nor an existing file"):
        apply_chat_template_option(bare_tokenizer, str(tmp_path / "nope.jinja"))
