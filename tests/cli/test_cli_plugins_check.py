"""`reinforge plugins check NAME` runs the conformance suite against an installed backend (here the
third-party example backend of examples/third_party/, found through --plugins)."""

from __future__ import annotations

import subprocess

import pytest

from tests.integration.grpo_helpers import OFFLINE_ENV, REINFORGE, REPO

PLUGINS = str(REPO / "examples" / "third_party" / "plugins.toml")


def check(*args: str) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([REINFORGE, "--plugins", PLUGINS, "plugins", "check", *args], capture_output=True, text=True,
                          env={**os.environ, **OFFLINE_ENV})


@pytest.mark.integration
def test_a_conforming_part_of_the_suite_passes_and_a_missing_feature_fails():
    passed = check("plain_torch", "-k", "output_columns or greedy_is_deterministic or same_seed_same_samples")
    assert passed.returncode == 0, passed.stdout[-3000:] + passed.stderr[-3000:]
    assert "3 passed" in passed.stdout
    # The example samples from the whole distribution only, so the top-k test of the suite fails, as it should.
    failed = check("plain_torch", "-k", "top_k_1_equals_greedy")
    assert failed.returncode == 1 and "1 failed" in failed.stdout


def test_an_unknown_backend_names_the_known_ones():
    done = check("plain_torc")
    assert done.returncode != 0
    assert "no generation or training backend is called 'plain_torc'" in done.stderr and "plain_torch" in done.stderr
