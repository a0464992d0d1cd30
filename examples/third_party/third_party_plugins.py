"""The plugin module of the third-party examples: registers `plain_torch` and `centred_rank` (imports nothing heavy)."""

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


@rf.hookimpl
def reinforge_register_advantage_estimators(register):  # noqa: ANN001, ANN201
    register(
        "centred_rank",
        "rank_advantages:CentredRank",
        description="each rollout's reward rank within its group, mapped to [-1/2, 1/2] (a third-party example)",
    )
