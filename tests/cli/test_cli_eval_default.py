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
