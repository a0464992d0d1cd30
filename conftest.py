"""Repository-wide pytest setup: the tiny-model kit's fixtures (tiny_model_dir, tiny_tokenizer)."""

pytest_plugins = ["reinforge.testing.fixtures"]
