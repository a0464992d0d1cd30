"""`RecordFormat`: which items an algorithm trains on, so the composition root can prepare them.

Why a declaration instead of a method: turning records into tokens is data work (chat templates,
prompt templates, overlong prompts), and the algorithm folder must not depend on the data folder.
An algorithm says what it needs; `reinforge.data.preparation` makes it.
"""

from __future__ import annotations

from typing import Literal

import attrs


@attrs.frozen
class RecordFormat:
    """What `train_step` receives in batches, and how to make it from records."""

    # prompts: tokenized prompts for rollouts (chat template, prompt template, system prompt, worked examples);
    # conversations: whole chats, ids plus the mask of the assistant's tokens (SFT);
    # preference_pairs: a chosen and a rejected conversation, encoded alike (DPO).
    kind: Literal["prompts", "conversations", "preference_pairs"]
    # conversations only: train on the last assistant message, not every one.
    only_final_assistant_turn: bool = False
