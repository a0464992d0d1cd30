"""Executors: where the parts of a run are built and run — `local` (this process) or `ray` (worker groups)."""
