"""Turn `{"problem", "answer"}` records into chat prompts, tokenized once, here.

Backends only see token ids (see `reinforge.core.interfaces`), so the chat template is applied
a single time, when prompts are built, and the ids travel with the messages they came from.
The problem goes through a prompt template: a `str.format` string with one `{}` (literal braces
written `{{` `}}`), either built in (`cot`, `math`, the ones of the DeepScaleR recipe) or a file.
"""

from __future__ import annotations

import logging
import string
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import attrs

from reinforge.core.config import doc
from reinforge.core.errors import ReinforgeError, read_user_text
from reinforge.core.run_config import ChatTurn, check_example_turns, check_tools, tool_schemas
from reinforge.data.messages import RowLocation, as_messages

log = logging.getLogger(__name__)

BUILTIN_PROMPTS = ("cot", "math", "boxed")

# ChatML, the format of Qwen and many others, offered to tokenizers that ship no template.
DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


@attrs.define(kw_only=True, frozen=True)
class PromptConfig:
    """How a problem becomes a prompt."""

    prompt_file: str | None = doc(
        "prompt template: cot, math, boxed, a path to a text file with one {} for the problem, or null for the raw problem",
        default="cot",
    )
    system_prompt: str | None = doc("system message placed before the user message (null: none)", default=None)
    example_turns: tuple[ChatTurn, ...] = doc(
        "worked examples as chat messages between the system message and the problem (user, assistant, ...)",
        default=(),
        validator=check_example_turns,
    )
    tools: tuple[dict[str, Any], ...] = doc(
        "function schemas passed as tools= to the chat template (see DataConfig.tools)",
        default=(),
        converter=tool_schemas,
        validator=check_tools,
    )
    max_prompt_length: int = doc("longest prompt in tokens, chat template included", default=512, validator=attrs.validators.ge(1))
    on_overlong: Literal["drop", "truncate"] = doc(
        "longer prompts are dropped, or truncated in the middle (keeping the start and the generation prompt) "
        "and flagged with metadata['prompt_truncated']; counted either way",
        default="drop",
        validator=attrs.validators.in_(("drop", "truncate")),
    )


def load_prompt_template(prompt_file: str | None) -> str | None:
    """The template text for `cot`, `math` or a file path; None stays None (the raw problem is the prompt)."""
    if prompt_file is None:
        return None
    if prompt_file in BUILTIN_PROMPTS:
        text = resources.files("reinforge.data").joinpath("prompts", f"{prompt_file}.txt").read_text(encoding="utf-8")
    else:
        path = Path(prompt_file).expanduser()
        if not path.exists():
            raise ReinforgeError(
                f"prompt file {prompt_file!r} does not exist (resolved to {path.resolve()}); use one of the "
                f"built-in templates {', '.join(BUILTIN_PROMPTS)}, a path to a text file holding one {{}} where "
                "the problem goes, or null to use the problem as it is."
            )
        # An editor's final newline is not part of the prompt (it would end every user message).
        text = read_user_text(path, "prompt file").rstrip()
    _check_template(text, prompt_file)
    return text


def _check_template(text: str, name: str) -> None:
    """A template must hold exactly one `{}`; any other braces must be doubled, or `format` would fail later."""
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(text) if field is not None]
    except ValueError as exc:
        fields = [f"<{exc}>"]
    if fields != [""]:
        raise ReinforgeError(
            f"prompt template {name!r} must contain exactly one {{}} (where the problem goes) and no other "
            f"replacement fields, but it has {fields or 'none'}; write literal braces as {{{{ and }}}}, "
            "e.g. \\boxed{{}}."
        )


def ensure_chat_template(tokenizer: Any, use_default: bool = False) -> None:
    """Raise a ReinforgeError if `tokenizer` has no chat template, or give it `DEFAULT_CHAT_TEMPLATE` when asked to."""
    if getattr(tokenizer, "chat_template", None):
        return
    if use_default:
        tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE
        return
    name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
    raise ReinforgeError(
        f"tokenizer {name!r} has no chat template, so prompts cannot be rendered as a conversation. Use an "
        "instruct/chat model's tokenizer, set `policy.chat_template` to a Jinja file, or set "
        "`policy.chat_template=default` (in Python: ensure_chat_template(tokenizer, use_default=True)) to use the "
        "ChatML template (<|im_start|>role ... <|im_end|>); base models were not trained on it, but RL from a "
        "base model can learn it."
    )


def build_prompts(
    records: Iterable[Mapping[str, Any]], tokenizer: Any, config: PromptConfig, *, source: str = "the records"
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Build `{"messages", "input_ids", "metadata"}` prompts; returns them and counts of what happened.

    A record holds its question as `problem` (a string, put through the prompt template) or, as TRL's
    datasets write it, `prompt`: a string (the same as `problem`) or a list of `{role, content}` messages,
    used as the conversation as it is (the system prompt and worked examples are put first when it has no
    system message of its own). `metadata` holds every field of the record (`problem` or `prompt`,
    `answer`, `index`, ...) plus `prompt_truncated`. Stats: `records`, `prompts`, `dropped_overlong`,
    `truncated_overlong`, `max_prompt_tokens` (after truncation). `source` names the data in errors.
    """
    ensure_chat_template(tokenizer)
    tools = [dict(t) for t in config.tools] or None
    if tools:
        check_tool_support(tokenizer, tools)
    template = load_prompt_template(config.prompt_file)
    records = list(records)
    system = [{"role": "system", "content": config.system_prompt}] if config.system_prompt is not None else []
    examples = [{"role": turn.role, "content": turn.content} for turn in config.example_turns]
    conversations = []
    for row, record in enumerate(records):
        question = _question(record, row, source)
        if isinstance(question, list):  # a conversation already: its own system message wins
            own_system = bool(question) and question[0]["role"] == "system"
            conversations.append(question[:1] + examples + question[1:] if own_system else [*system, *examples, *question])
            continue
        user = question if template is None else template.format(question)
        conversations.append([*system, *examples, {"role": "user", "content": user}])

    token_ids = _tokenize(tokenizer, conversations, tools=tools)
    limit = config.max_prompt_length
    prompts: list[dict[str, Any]] = []
    dropped = truncated = 0
    for record, messages, ids in zip(records, conversations, token_ids):
        too_long = len(ids) > limit
        if too_long and config.on_overlong == "drop":
            dropped += 1
            continue
        if too_long:
            truncated += 1
            head = (limit + 1) // 2
            ids = ids[:head] + ids[len(ids) - (limit - head) :]
        prompts.append({"messages": messages, "input_ids": ids, "metadata": {**record, "prompt_truncated": too_long}})
    stats = {
        "records": len(records),
        "prompts": len(prompts),
        "dropped_overlong": dropped,
        "truncated_overlong": truncated,
        "max_prompt_tokens": max((len(p["input_ids"]) for p in prompts), default=0),
    }
    return prompts, stats


def _question(record: Mapping[str, Any], row: int, source: str) -> str | list[dict[str, str]]:
    """The record's `problem` (a string), else its `prompt` (a string, or checked messages)."""
    if "problem" in record:
        return str(record["problem"])
    if "prompt" in record:
        value = record["prompt"]
        if isinstance(value, str):
            return value
        return as_messages(value, RowLocation(source, row), "prompt", role="user")
    raise ReinforgeError(
        f"{source}, record {row} (counting from 0) has neither 'problem' nor 'prompt' (its keys: {sorted(record)}); a "
        "prompt record is {'problem': 'What is 2 + 3?', 'answer': '5'} or, as TRL writes it, {'prompt': 'What is 2 + 3?' "
        "or [{'role': 'user', 'content': ...}], 'answer': '5'}, with any other fields for the reward"
    )


def build_prompt_set(
    data: Any, tokenizer: Any, records: list[dict[str, Any]], *, source: str = "the records"
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """`build_prompts` with the prompt options of a `DataConfig` (template, system prompt, longest prompt)."""
    prompt_config = PromptConfig(
        prompt_file=data.prompt_file,
        system_prompt=data.system_prompt,
        example_turns=data.example_turns,
        tools=data.tools,
        max_prompt_length=data.max_input_seq_length,
        on_overlong=data.on_overlong_prompt,
    )
    return build_prompts(records, tokenizer, prompt_config, source=source)


def check_tool_support(tokenizer: Any, tools: list[dict[str, Any]]) -> None:
    """Raise a ReinforgeError unless the chat template shows the model every tool's name when given `tools=`."""
    probe = [{"role": "user", "content": "reinforge-probe"}]
    rendered = tokenizer.apply_chat_template(probe, tools=tools, tokenize=False, add_generation_prompt=True)
    missing = [t["function"]["name"] for t in tools if t["function"]["name"] not in rendered]
    if missing:
        name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
        raise ReinforgeError(
            f"data.tools is set, but the chat template of {name!r} has no tool support: rendered with tools=, it does "
            f"not show the tool(s) {missing} to the model. Use a model whose template renders tools (Qwen2.5, "
            "Llama 3.1, Hermes, ...), set policy.chat_template to such a template, or unset data.tools and "
            "describe the tool in data.system_prompt (with a worked call in data.example_turns)."
        )


def _tokenize(
    tokenizer: Any, conversations: list[list[dict[str, str]]], chunk: int = 1024, *, tools: list[dict[str, Any]] | None = None
) -> list[list[int]]:
    """Chat template + tokenization in one call per chunk (`return_dict=False` gives plain id lists in transformers 4 and 5)."""
    ids: list[list[int]] = []
    for start in range(0, len(conversations), chunk):
        part = conversations[start : start + chunk]
        out = tokenizer.apply_chat_template(part, tools=tools, add_generation_prompt=True, tokenize=True, return_dict=False)
        ids.extend(list(map(int, row)) for row in out)
    return ids


def report_overlong(
    stats: Mapping[str, Any], *, split: str, limit: str, max_dropped_share: float, noun: str = "prompts"
) -> None:
    """Say at start how many prompts were dropped (or truncated) for length; too many dropped is an error.

    `limit` names the setting and its value, e.g. "data.max_input_seq_length=36"; `noun` what was counted
    ("prompts" for RL, which may be truncated instead; "examples" for SFT conversations and DPO pairs).
    """
    records, dropped, truncated = stats.get("records", 0), stats.get("dropped_overlong", 0), stats.get("truncated_overlong", 0)
    if truncated:
        log.warning("%d of %d prompts exceed %s and were truncated (%s set; they are rolled out but not trained on)", truncated, records, limit, split)
    if not dropped:
        return
    message = f"{dropped} of {records} {noun} exceed {limit} and were dropped ({split} set)"
    if dropped > max_dropped_share * records:
        shorten = (
            "shorten the prompts (data.prompt_file, data.system_prompt), set data.on_overlong_prompt=truncate"
            if noun == "prompts"
            else "shorten the data"
        )
        raise ReinforgeError(
            f"{message}: more than data.max_dropped_share={max_dropped_share:g} of them. Raise {limit.split('=')[0]}, "
            f"{shorten}, or raise data.max_dropped_share if dropping them is intended."
        )
    log.warning("%s", message)
