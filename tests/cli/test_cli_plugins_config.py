"""The `reinforge` command: plugins list/show, config show, exit codes, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from reinforge import __version__
from reinforge.cli.main import main
from reinforge.core import plugin_trust

LOCAL_PLUGIN = '''
from __future__ import annotations
import attrs
from reinforge.core.config import doc
from reinforge.core.hookspecs import hookimpl
from reinforge.core.run_config import PolicyConfig


@attrs.define(kw_only=True, frozen=True)
class ToyOptions:
    """Options of the toy algorithm."""
    steps: int = doc("how many steps", default=3, validator=attrs.validators.gt(0))


@attrs.define(kw_only=True, frozen=True)
class ToyRun:
    algorithm: str = doc("algorithm name", default="toy")
    toy: ToyOptions = doc("toy settings", factory=ToyOptions)
    policy: PolicyConfig = doc("policy")


@hookimpl
def reinforge_register_algorithms(register):
    register("toy", "collections:OrderedDict", config=ToyRun, description="a toy algorithm for CLI tests")
'''


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A user project folder with a local plugin registering the algorithm 'toy'."""
    (tmp_path / "toy_plugin.py").write_text(LOCAL_PLUGIN)
    (tmp_path / "plugins.toml").write_text('[plugins]\nlocal = ["toy_plugin.py"]\n')
    plugin_trust.trust(tmp_path / "plugins.toml")  # found in the working directory: loaded once trusted
    (tmp_path / "run.yaml").write_text(
        textwrap.dedent(
            """
            algorithm: toy
            toy: {steps: 5}
            policy: {model_name: /models/tiny, train_global_batch_size: 8, train_micro_batch_size: 2}
            """
        )
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("REINFORGE_PLUGINS", raising=False)
    return tmp_path


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "reinforge.cli.main", *args], capture_output=True, text=True, cwd=cwd, env=env)


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"reinforge {__version__}"


def test_plugins_list_table_shows_every_kind_and_the_local_plugin(project, capsys):
    assert main(["plugins", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("dtensor", "hf", "grpo", "math", "toy"):
        assert name in out


def test_plugins_list_json_parses_back(project, capsys):
    assert main(["plugins", "list", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    by_name = {(p["kind"], p["name"]): p for p in data["plugins"]}
    assert by_name[("algorithm", "toy")]["origin"] == "local"
    assert by_name[("generation_backend", "hf")]["source"] == "built-in"
    assert data["load_failures"] == []


def test_plugins_list_kind_filter(project, capsys):
    assert main(["plugins", "list", "--kind", "algorithm", "--json"]) == 0
    kinds = {p["kind"] for p in json.loads(capsys.readouterr().out)["plugins"]}
    assert kinds == {"algorithm"}


def test_plugins_list_and_show_the_advantage_estimators(project, capsys):
    assert main(["plugins", "list", "--kind", "advantage_estimator", "--json"]) == 0
    records = json.loads(capsys.readouterr().out)["plugins"]
    assert [(p["kind"], p["name"], p["origin"]) for p in records] == [
        ("advantage_estimator", name, "built-in") for name in ("dr_grpo", "grpo", "reinforce_pp", "rloo")
    ]
    assert main(["plugins", "list"]) == 0
    rows = [line.split("│")[1:3] for line in capsys.readouterr().out.splitlines() if "rloo" in line or "dr_grpo" in line]
    # the kind's own rows (the column may wrap its two words, never cut them)
    assert [(kind.strip(), name.strip()) for kind, name in rows] in (
        [("advantage estimator", "dr_grpo"), ("advantage estimator", "rloo")],
        [("advantage", "dr_grpo"), ("advantage", "rloo")],
    )
    assert main(["plugins", "show", "reinforce_pp"]) == 0
    out = capsys.readouterr().out
    assert "advantage estimator 'reinforce_pp'" in out and "minus_baseline" in out
    assert main(["plugins", "show", "grpo", "--kind", "advantage_estimator"]) == 0
    assert "takes no options" in capsys.readouterr().out
    result = run_cli("plugins", "show", "grpo", cwd=project)  # an algorithm and an estimator share the name
    assert result.returncode != 0 and "(algorithm, advantage_estimator); add --kind KIND" in result.stderr


def test_plugins_list_all_shows_modules_and_blocked(project, capsys):
    (project / "plugins.toml").write_text('[plugins]\nlocal = ["toy_plugin.py"]\nblock = ["hf"]\n')
    plugin_trust.trust(project / "plugins.toml")
    assert main(["plugins", "list", "--all"]) == 0
    out = capsys.readouterr().out
    assert "toy_plugin" in out and "blocked: hf" in out


def test_plugins_show_lists_every_field(project, capsys):
    assert main(["plugins", "show", "toy", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    fields = {f["name"]: f for f in data["fields"]}
    assert fields["toy.steps"] == {"name": "toy.steps", "type": "int", "default": "3", "doc": "how many steps"}
    assert fields["policy.model_name"]["default"] == "(required)"
    assert main(["plugins", "show", "toy"]) == 0
    assert "how many steps" in capsys.readouterr().out


def test_config_show_prints_the_resolved_config(project, capsys):
    assert main(["config", "show", "run.yaml", "toy.steps=7", "policy.optimizer.lr=2e-6"]) == 0
    out = capsys.readouterr().out
    assert "steps: 7" in out and "lr: 2.0e-06" in out and "train_micro_batch_size: 2" in out


def test_config_show_reports_every_error_without_traceback(project):
    result = run_cli("config", "show", "run.yaml", "toy.steps=0", "+policy.modelname=x", cwd=project)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "2 configuration error(s)" in result.stderr
    assert "@ toy.steps" in result.stderr and "@ policy.modelname" in result.stderr


def test_unknown_plugin_name_exits_nonzero_with_suggestion(project):
    result = run_cli("plugins", "show", "tyo", cwd=project)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "did you mean 'toy'?" in result.stderr


def test_debug_flag_shows_the_traceback(project):
    result = run_cli("--debug", "plugins", "show", "tyo", cwd=project)
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_missing_config_file_is_a_user_error(project):
    result = run_cli("config", "show", "nope.yaml", cwd=project)
    assert result.returncode == 1 and "does not exist" in result.stderr and "Traceback" not in result.stderr


def test_plugins_list_imports_no_engine_or_torch(tmp_path):
    """`plugins list` must stay fast: it may not import torch, transformers or any engine."""
    script = (
        "import sys; from reinforge.cli.main import main; main(['plugins', 'list', '--json']);"
        "heavy = [m for m in ('torch', 'transformers', 'vllm', 'sglang', 'tensorrt_llm', 'megatron', 'ray') if m in sys.modules];"
        "sys.stderr.write('HEAVY=' + ','.join(heavy))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().endswith("HEAVY="), result.stderr
