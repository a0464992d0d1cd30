"""`reinforge eval`'s default config ships inside the package; the example file inherits it unchanged."""

from __future__ import annotations

from pathlib import Path

from reinforge.cli.eval_cmd import DEFAULT_CONFIG
from reinforge.core.load import load_config
from reinforge.eval.config import EvalConfig

REPO = Path(__file__).resolve().parents[2]


def test_default_eval_config_is_package_data_and_matches_the_example():
    import reinforge

    assert DEFAULT_CONFIG.is_relative_to(Path(reinforge.__file__).parent)
    packaged = load_config(DEFAULT_CONFIG, schema=EvalConfig)
    example = load_config(REPO / "examples" / "configs" / "evals" / "eval.yaml", schema=EvalConfig)
    assert packaged == example
    assert packaged.data.dataset == "aime" and packaged.eval.metric == "pass@k"


def test_cpu_default_is_the_arithmetic_evaluation_shipped_in_the_package():
    import reinforge
    from reinforge.cli.eval_cmd import CPU_DEFAULT_CONFIG

    assert CPU_DEFAULT_CONFIG.is_relative_to(Path(reinforge.__file__).parent)
    packaged = load_config(CPU_DEFAULT_CONFIG, schema=EvalConfig)
    example = load_config(REPO / "examples" / "configs" / "evals" / "arith-cpu.yaml", schema=EvalConfig)
    assert packaged == example
    assert (packaged.generation.backend, packaged.generation.precision) == ("hf", "float32")
    assert packaged.data.dataset == "arithmetic" and packaged.eval.k_value == 4


def test_default_config_follows_the_visible_devices():
    import torch

    from reinforge.cli.eval_cmd import CPU_DEFAULT_CONFIG, default_config

    assert default_config() == (DEFAULT_CONFIG if torch.cuda.is_available() else CPU_DEFAULT_CONFIG)


def test_eval_without_config_runs_on_cpu(tiny_model_dir, capsys):
    """On a machine without a GPU, `reinforge eval generation.model_name=...` needs no other override."""
    import json

    import torch

    from reinforge.cli.main import main

    if torch.cuda.is_available():
        import pytest

        pytest.skip("a GPU is visible: the default is AIME 2024 with vLLM, which this test does not run")
    code = main(["eval", f"generation.model_name={tiny_model_dir}", "eval.num_tests_per_prompt=1", "eval.k_value=1", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "no GPU here: evaluating with the CPU default arith-cpu.yaml" in captured.err  # a notice, on stderr: stdout stays the results (--json parses)
    metrics = json.loads(captured.out[captured.out.index("{") :])
    assert metrics["num_problems"] == 32.0  # the 32 held-out sums of the CPU recipes
