"""A word-guessing game as a reinforge plugin: the `word_guess` environment and dataset."""
