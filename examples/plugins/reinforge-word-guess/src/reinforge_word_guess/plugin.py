"""Registers the game. Kept import-light: implementations are named by their import paths."""

from __future__ import annotations

import reinforge as rf


@rf.hookimpl
def reinforge_register_environments(register) -> None:
    register(
        "word_guess",
        "reinforge_word_guess.game:WordGuessEnvironment",
        config="reinforge_word_guess.game:WordGuessConfig",
        description="multi-turn game: guess a five-letter word with G/Y/. feedback per letter",
    )


@rf.hookimpl
def reinforge_register_datasets(register) -> None:
    register(
        "word_guess",
        "reinforge_word_guess.game:word_guess_records",
        config="reinforge_word_guess.game:WordGuessDatasetConfig",
        description="secret five-letter words for the word_guess environment (built in, offline)",
    )
