"""The bridge between turns: what the chat template puts between an assistant turn and the next generation.

A multi-turn rollout must train on exactly the tokens the model sampled and saw. So the loop
never decodes and re-encodes what the model generated, and never re-renders the conversation:
after each turn it appends the generated ids as they are, then the bridge, the template's text
after an assistant message's content: the closing the model did not write itself (ChatML's
`<|im_end|>\\n`, or only its `\\n` when the model stopped on `<|im_end|>`), the observation
message, and the generation prompt of the next assistant turn.

The bridge is found by rendering a short probe conversation (a user message and an assistant
message whose content is a known sentinel) with and without the observation, and taking what
follows the sentinel; its cost does not grow with the conversation. Rendering the probe both
ways is also the check that the template can bridge at all: it must render the observation's
role, and appending a message must not change an earlier one. Templates that strip earlier
`<think>` blocks (Qwen3's, for a user observation) fail that check and are refused with an
error naming the template and the role, instead of silently training on a history the model
would never see again (or on the conversation appended twice, verl#6501's cousin).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from reinforge.core.errors import ReinforgeError

_PROBE_QUESTION = "reinforge-probe-question"
# A reasoning block in the probe's reply: a template that drops earlier <think> blocks changes it
# once a message follows, and is caught by the prefix check.
PROBE_REPLY = "<think>\nreinforge-probe-reasoning\n</think>\n\nreinforge-probe-reply"
_PROBE_OBSERVATION = "reinforge-probe-observation"


class TurnBridge:
    """The bridge ids for a tokenizer's chat template (and the tool schemas it is rendered with)."""

    def __init__(self, tokenizer: Any, *, tools: Sequence[Mapping[str, Any]] | None = None) -> None:
        self.tokenizer = tokenizer
        self.tools = [dict(t) for t in tools] if tools else None
        self._special_ids = frozenset(int(i) for i in getattr(tokenizer, "all_special_ids", ()) or ())
        self._context = [{"role": "user", "content": _PROBE_QUESTION}, {"role": "assistant", "content": PROBE_REPLY}]
        self._before: str | None = None

    @property
    def template_name(self) -> str:
        name = getattr(self.tokenizer, "name_or_path", "") or type(self.tokenizer).__name__
        return f"the chat template of {name!r}"

    def check(self, role: str = "user") -> None:
        """Raise a ReinforgeError now if observations of `role` cannot be bridged (called at the start of a run)."""
        self.text({"role": role, "content": _PROBE_OBSERVATION})

    def text(self, observation: Mapping[str, Any]) -> str:
        """The template's text between an assistant message's content and the next generation, around `observation`."""
        role = str(observation.get("role"))
        before = self._probe_before()
        after = self._render([*self._context, dict(observation)], generation_prompt=True, role=role)
        head = before.find(PROBE_REPLY)
        at = after.find(PROBE_REPLY)
        if at < 0 or after[:at] != before[:head]:
            raise ReinforgeError(
                f"{self.template_name} changes an earlier message when a {role!r} message is appended after an "
                "assistant turn (it strips <think> blocks from earlier turns, or re-renders the history), so the "
                "tokens the model saw cannot be kept turn after turn. Use a template that only appends "
                "(policy.chat_template: a Jinja file, or 'default' for ChatML), or return observations of another role."
            )
        bridge = after[at + len(PROBE_REPLY) :]
        content = str(observation.get("content", "")).strip()
        if content and content not in bridge:
            raise ReinforgeError(
                f"{self.template_name} does not render messages of role {role!r} (the observation's text is "
                "missing from what it renders), so the model would never see the environment's answer. Return "
                "observations in a role the template renders (user, or tool for templates with tool support), "
                "or set policy.chat_template to a template that renders it."
            )
        return bridge

    def ids(self, observation: Mapping[str, Any], generated: Sequence[int]) -> list[int]:
        """The bridge's token ids after a turn that generated `generated` (its closing special token is not repeated)."""
        ids = list(self.tokenizer(self.text(observation), add_special_tokens=False)["input_ids"])
        # The model wrote the template's closing token itself (it stopped on <|im_end|>): keep its own.
        if generated and ids and int(generated[-1]) == ids[0] and ids[0] in self._special_ids:
            ids = ids[1:]
        return ids

    def _probe_before(self) -> str:
        if self._before is None:
            self._before = self._render(self._context, generation_prompt=False, role="assistant")
            if PROBE_REPLY not in self._before:
                raise ReinforgeError(
                    f"{self.template_name} does not render an assistant message's content as it is (a probe reply "
                    "with a <think> block came out changed), so turns cannot be bridged token for token. Use a "
                    "template that renders assistant messages verbatim (policy.chat_template)."
                )
        return self._before

    def _render(self, messages: list[dict[str, Any]], *, generation_prompt: bool, role: str) -> str:
        try:
            return self.tokenizer.apply_chat_template(
                messages, tools=self.tools, tokenize=False, add_generation_prompt=generation_prompt
            )
        except Exception as exc:  # noqa: BLE001 - a template's raise_exception() is a TemplateError; say which role
            raise ReinforgeError(
                f"{self.template_name} cannot render a {role!r} message after an assistant turn "
                f"({type(exc).__name__}: {str(exc)[:200]}); return observations in a role it accepts, or set "
                "policy.chat_template to a template that renders it."
            ) from None
