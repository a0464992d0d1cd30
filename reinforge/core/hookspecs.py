"""The hook specifications: one hook per kind of plugin.

Each hook receives a `register` callable built by the registry; a plugin calls it once per
implementation it offers. Hooks declare, the registry decides: nothing but
`reinforge.core.registry` calls `pm.hook.*`.

    register(name, "pkg.module:Class", config="pkg.module:Config",
             requires=("vllm",), extra="vllm", description="...")
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from reinforge.core.registry import Register

PROJECT = "reinforge"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def reinforge_register_training_backends(register: Register) -> None:
    """Called once at registry start-up to register training backends (dtensor, megatron, ...)."""


@hookspec
def reinforge_register_generation_backends(register: Register) -> None:
    """Called once at registry start-up to register generation backends (hf, vllm, sglang, trtllm, ...)."""


@hookspec
def reinforge_register_algorithms(register: Register) -> None:
    """Called once at registry start-up to register algorithms (grpo, dpo, sft, ...)."""


@hookspec
def reinforge_register_environments(register: Register) -> None:
    """Called once at registry start-up to register environments (math, ...)."""


@hookspec
def reinforge_register_datasets(register: Register) -> None:
    """Called once at registry start-up to register dataset readers."""


@hookspec
def reinforge_register_loggers(register: Register) -> None:
    """Called once at registry start-up to register metric loggers (console, jsonl, tensorboard, ...)."""


@hookspec
def reinforge_register_advantage_estimators(register: Register) -> None:
    """Called once at registry start-up to register advantage estimators (grpo, rloo, reinforce_pp, dr_grpo, ...)."""
