"""Evaluation: metrics over several sampled answers per prompt (pass@k, avg@k, cons@k)."""
