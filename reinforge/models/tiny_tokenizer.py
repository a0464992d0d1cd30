"""A small byte-level BPE tokenizer with a ChatML chat template, trained locally in ~0.1 s.

Why: tests and demos must never download a tokenizer, yet they should exercise the same code
paths as a real Qwen checkpoint (chat template, special tokens, `eos = <|im_end|>`, padding).

Gotcha this module exists to get right: with transformers 5, `AutoTokenizer` loads any
folder whose config says `model_type="qwen2"` with `Qwen2Tokenizer`, which *rebuilds* the
normalizer and pre-tokenizer (NFC, Qwen's split regex with one token per digit, ByteLevel
without its own regex). A BPE trained with any other pre-tokenizer then silently gets
different ids after a reload. So we train with exactly Qwen2's pipeline.
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING

from reinforge.data.arithmetic import make_arithmetic_records, worked_solution

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

PAD_TOKEN = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = (PAD_TOKEN, IM_START, IM_END)  # ids 0, 1, 2

# Qwen2's pre-tokenizer split, identical to transformers' `Qwen2Tokenizer` (see module docstring).
QWEN2_SPLIT_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# ChatML, as Qwen2.5 writes it, without a default system message (keeps prompts short). The
# `{% generation %}` block marks what the assistant wrote, including its `<|im_end|>`, so
# `apply_chat_template(..., return_assistant_tokens_mask=True)` gives the SFT loss mask.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- generation -%}{{- message['content'] + '<|im_end|>' -}}{%- endgeneration -%}"
    "{{- '\\n' -}}"
    "{%- else -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)

DEFAULT_VOCAB_SIZE = 1024  # an upper bound: BPE stops earlier when the corpus runs out of merges
MODEL_MAX_LENGTH = 1024  # matches the presets' max_position_embeddings


def corpus_texts() -> list[str]:
    """The training text: the shipped sentences plus generated problems and worked solutions.

    Fixed seeds, so the tokenizer (and every id) is the same on every build.
    """
    shipped = resources.files("reinforge.models").joinpath("corpus/math_text.txt").read_text(encoding="utf-8")
    texts = [line for line in shipped.splitlines() if line.strip() and not line.startswith("#")]
    texts += ["system\n", "user\n", "assistant\n"]
    for kinds, ops, max_operand in (
        (("arith",), ("+", "-", "*", "/"), 50),
        (("arith",), ("+", "-"), 200),
        (("linear",), ("+",), 20),
    ):
        records = make_arithmetic_records(1500, seed=1234, ops=ops, kinds=kinds, max_operand=max_operand)
        texts += [f"{r['problem']}\n{worked_solution(r)}" for r in records]
    return texts


def build_tokenizer(vocab_size: int = DEFAULT_VOCAB_SIZE) -> PreTrainedTokenizerBase:
    """Train the BPE and wrap it as a transformers fast tokenizer (save it with `save_pretrained`).

    `<|endoftext|>` is the pad (and unk) token, `<|im_end|>` the eos token, as in Qwen2.5
    instruct models; there is no bos token.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte encodes: no unknown text
        show_progress=False,
    )
    bpe.train_from_iterator(corpus_texts(), trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token=IM_END,
        pad_token=PAD_TOKEN,
        unk_token=PAD_TOKEN,  # what Qwen2Tokenizer sets on reload; set here too so both agree
        additional_special_tokens=[IM_START],
        chat_template=CHAT_TEMPLATE,
        model_max_length=MODEL_MAX_LENGTH,
    )
