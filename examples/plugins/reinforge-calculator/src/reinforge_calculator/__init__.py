"""reinforge-calculator: a GRPO variant, a two-turn calculator environment and a generation backend, as one
plugin package written against `import reinforge` alone."""
