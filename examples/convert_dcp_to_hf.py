"""Export a checkpoint's policy to a Hugging Face folder; a thin wrapper over `reinforge convert`.

    uv run examples/convert_dcp_to_hf.py --config=results/grpo-deepscaler-8K/step_240/config.yaml \
        --dcp-ckpt-path=results/grpo-deepscaler-8K/step_240/policy --hf-ckpt-path=results/grpo-deepscaler-8K/hf
"""

import sys

from reinforge.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["convert", *sys.argv[1:]]))
