"""Evaluate a model folder (AIME24 by default); a thin wrapper over `reinforge eval`.

    uv run examples/run_eval.py generation.model_name=results/grpo-deepscaler-24K/hf
    uv run examples/run_eval.py --config=examples/configs/evals/eval.yaml generation.model_name=... eval.num_tests_per_prompt=16
"""

import sys

from reinforge.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["eval", *sys.argv[1:]]))
