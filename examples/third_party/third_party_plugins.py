"""The plugin module of the third-party examples: registers `plain_torch` (imports nothing heavy)."""

from __future__ import annotations

import reinforge as rf


@rf.hookimpl
def reinforge_register_generation_backends(register):  # noqa: ANN001, ANN201 - the hook's documented signature
    register(
        "plain_torch",
        "plain_generation:PlainGeneration",
        requires=("torch", "transformers"),
        description="token-by-token sampling with a plain transformers model (a third-party example)",
    )
