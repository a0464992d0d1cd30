#!/usr/bin/env bash
# Install (scripts/install.sh), then the main job: GRPO on arithmetic on this CPU, then the plots.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
RF=.venv/bin/reinforge
$RF model build --demo --out results/models/small-arith   # ~5 min the first time, then cached
rm -rf results/grpo-arith-cpu   # a fresh demo run each time (recipes resume from their checkpoints otherwise)
$RF train --config examples/configs/grpo-arith-cpu.yaml "$@"
$RF plot results/grpo-arith-cpu/logs
echo "plots: results/grpo-arith-cpu/logs/plots/  (reward.png, validation.png, response_length.png, step_time.png)"
