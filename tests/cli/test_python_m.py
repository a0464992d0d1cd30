"""`python -m reinforge` is the `reinforge` command (where the console script is not on PATH)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import reinforge


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reinforge", *args], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})


def test_python_m_reinforge_runs_the_cli():
    version = run("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"reinforge {reinforge.__version__}"
    listing = run("plugins", "list", "--kind", "algorithm", "--json")
    assert listing.returncode == 0, listing.stderr
    assert {"grpo", "sft", "dpo"} <= {p["name"] for p in json.loads(listing.stdout)["plugins"]}
    error = run("plugins", "show", "grpoo")
    assert error.returncode == 1 and "did you mean 'grpo'" in error.stderr and "Traceback" not in error.stderr
