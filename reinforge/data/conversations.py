"""Chat conversations as training tokens: the ids and the mask of the tokens the assistant wrote.

SFT trains on the assistant's tokens of each conversation and DPO compares the chosen and the
rejected conversation's, so both need the same encoding. The chat template's own
`{% generation %}` markers say which tokens the assistant wrote, when it has them. Without
them, the assistant's tokens of message k are those between the template rendered up to the
message before it (with the generation prompt) and up to the message itself, less the
whitespace the template puts after a message; this needs a template that builds a
conversation by appending messages, and is refused otherwise.
"""

from __future__ import annotations

import re
from typing import Any

from reinforge.core.errors import ReinforgeError


def to_messages(record: dict[str, Any]) -> list[dict[str, str]]:
    """A record as chat messages: `messages` as given, else `problem`/`answer` style input and output."""
    if "messages" in record:
        return list(record["messages"])
    for prompt_key, response_key in (("problem", "solution"), ("input", "output"), ("problem", "generated_solution"), ("problem", "answer")):
        if prompt_key in record and response_key in record:
            return [{"role": "user", "content": str(record[prompt_key])}, {"role": "assistant", "content": str(record[response_key])}]
    raise ReinforgeError(
        f"an SFT record needs `messages`, or a prompt and a response (problem/solution, input/output, "
        f"problem/generated_solution); this one has {sorted(record)}"
    )


_GENERATION_BLOCK = re.compile(r"\{%-?\s*generation\s*-?%\}")  # a template's `{% generation %}` marker


def encode_conversation(tokenizer: Any, messages: list[dict[str, str]], *, only_final: bool) -> tuple[list[int], list[float]]:
    """(input_ids, loss mask): 1 on the assistant's tokens (only the last turn's with `only_final`)."""
    if not any(m.get("role") == "assistant" for m in messages):
        raise ReinforgeError(f"an SFT/DPO conversation has no assistant message to train on (roles: {[m.get('role') for m in messages]})")
    if _GENERATION_BLOCK.search(getattr(tokenizer, "chat_template", None) or ""):
        encoded = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
        ids, mask = list(encoded["input_ids"]), [float(m) for m in encoded["assistant_masks"]]
    else:
        ids, mask = _assistant_mask_by_prefixes(tokenizer, messages)
    if not any(mask):
        raise ReinforgeError(
            "the chat template marks no assistant tokens: its {% generation %} blocks are empty or the assistant "
            "messages are empty; check the tokenizer's chat_template"
        )
    if only_final:
        last_start = max(i for i in range(len(mask)) if mask[i] and (i == 0 or not mask[i - 1]))
        mask = [m if i >= last_start else 0.0 for i, m in enumerate(mask)]
    return ids, mask


def _assistant_mask_by_prefixes(tokenizer: Any, messages: list[dict[str, str]]) -> tuple[list[int], list[float]]:
    """(input_ids, mask) for a template without `{% generation %}` markers; see the module docstring."""

    def encode(part: list[dict[str, str]], prompt: bool) -> list[int]:
        if not part:
            return []
        return list(tokenizer.apply_chat_template(part, tokenize=True, return_dict=True, add_generation_prompt=prompt)["input_ids"])

    ids = encode(messages, False)
    mask = [0.0] * len(ids)
    for k, message in enumerate(messages):
        if message.get("role") != "assistant":
            continue
        start, through = encode(messages[:k], True), encode(messages[: k + 1], False)
        if ids[: len(start)] != start or ids[: len(through)] != through or len(through) < len(start):
            raise ReinforgeError(
                f"the chat template has no {{% generation %}} blocks, and the conversation's tokens are not built by "
                f"appending messages (the tokens up to assistant message {k} are not a prefix of the whole), so which "
                "tokens the assistant wrote cannot be told apart; use a tokenizer whose chat_template marks them with "
                "{% generation %} ... {% endgeneration %}"
            )
        stop = len(through)
        while stop > len(start) and not tokenizer.decode(ids[stop - 1 : stop]).strip():
            stop -= 1  # the newline the template writes after a message is not the assistant's
        mask[len(start) : stop] = [1.0] * (stop - len(start))
    return ids, mask
