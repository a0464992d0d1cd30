"""The side-by-side harness behind `python -m benchmarks.run` (see benchmarks/run.py)."""
