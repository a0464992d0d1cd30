"""A third-party plugin package written against `import reinforge` alone (examples/plugins/reinforge-calculator):
an algorithm (a GRPO variant registered with run_config="grpo"), a two-turn environment with a dataclass config
and a wrapping generation backend train from its YAML recipe and from Python, and pass `reinforge plugins check`."""

from __future__ import annotations

import ast
import subprocess

import pytest

import reinforge as rf
from tests.integration.calculator_package import PACKAGE, SOURCES, install_in_process, installed_env
from tests.integration.grpo_helpers import REINFORGE

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_the_package_imports_nothing_but_the_public_api():
    for path in [*SOURCES.rglob("*.py"), PACKAGE / "train.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not [n for n in names if n.startswith("reinforge.")], f"{path.name} imports {names}: only `import reinforge` is public"


def test_the_calculator_answers_one_call_then_scores_the_answer(monkeypatch, tmp_path):
    install_in_process(monkeypatch, tmp_path)
    from reinforge_calculator.environment import CalculatorConfig, CalculatorEnvironment, calculate

    assert [calculate(e) for e in ("12 * 7", "7 / 2", "-(3 - 5) % 4", "__import__('os')", "2 ** 99", "1 / 0")] == [
        "84", "3.5", "2", "error: ValueError", "error: ValueError", "error: ZeroDivisionError"]
    env = CalculatorEnvironment(CalculatorConfig(max_calls=1))
    question = [{"role": "user", "content": "What is 12 * 7?"}]
    call = [*question, {"role": "assistant", "content": "<calc>12 * 7</calc>"}]
    step = env.step([call], [{"answer": "84"}])
    assert (step.rewards, step.done, step.observations) == ([0.0], [False], [{"role": "user", "content": "<result>84</result>"}])
    answered = [*call, step.observations[0], {"role": "assistant", "content": "\\boxed{84}"}]
    again = [*call, step.observations[0], {"role": "assistant", "content": "<calc>1 + 1</calc>"}]  # past max_calls: final
    step = env.step([answered, again], [{"answer": "84"}, {"answer": "84"}])
    assert (step.rewards, step.done, step.correct) == ([1.0, 0.0], [True, True], [True, False])


def test_the_packages_plugins_are_listed_with_their_package(monkeypatch, tmp_path):
    install_in_process(monkeypatch, tmp_path)
    registry = rf.Registry.create()
    for kind, name in (("algorithm", "moving_baseline"), ("environment", "calc_tag"), ("generation_backend", "calculator_stop")):
        assert str(registry.get(kind, name).source) == "reinforge-calculator==0.1.0"
    assert registry.config_class("algorithm", "moving_baseline").__name__ == "GRPORunConfig"


@pytest.mark.integration
def test_the_package_trains_from_its_yaml_recipe(monkeypatch, tiny_model_dir, tmp_path):
    install_in_process(monkeypatch, tmp_path)
    overrides = [f"policy.model_name={tiny_model_dir}", "grpo.max_num_steps=2", "policy.generation.max_new_tokens=12",
                 f"logger.log_dir={tmp_path / 'logs'}", "logger.loggers=[jsonl]"]
    config = rf.load_config(PACKAGE / "recipe.yaml", overrides)
    assert config.algorithm == "moving_baseline" and config.env.env_cfg.max_calls == 1
    trainer = rf.Trainer.from_config(config)
    metrics = trainer.fit()
    assert trainer.step == 2  # grpo.max_num_steps: the variant's schedule, read from grpo:
    assert type(trainer.algorithm).__name__ == "MovingBaselineGRPO" and trainer.algorithm.baseline is not None
    assert type(trainer.run.generation).__name__ == "CalculatorStopGeneration"
    assert metrics["train/num_rollouts"] == 16.0 and "env/calculator_calls" in metrics


@pytest.mark.integration
def test_the_package_trains_from_python(monkeypatch, tiny_model_dir, tmp_path):
    install_in_process(monkeypatch, tmp_path)
    from reinforge_calculator.algorithm import MovingBaselineGRPO

    trainer = rf.Trainer(
        algorithm=MovingBaselineGRPO(rf.GRPOConfig(num_prompts_per_step=2, num_generations_per_prompt=4, max_rollout_turns=2)),
        policy=rf.backends.DTensorTraining(str(tiny_model_dir), max_total_sequence_length=160),
        generation=rf.backends.Generation("calculator_stop", max_new_tokens=12, engine="hf"),
        environment=rf.environments.Registered("calc_tag", max_calls=1),
        train_data=rf.data.arithmetic_problems(num_samples=16, max_operand=10),
        data=rf.DataConfig(prompt_file=None, system_prompt="Use <calc>EXPRESSION</calc>, then answer within \\boxed{}."),
        loop=rf.LoopConfig(max_steps=2, checkpoint_dir=str(tmp_path / "ckpt")),
        loggers=["jsonl"],
        log_dir=str(tmp_path / "logs"),
    )
    trainer.fit()
    assert trainer.step == 2 and trainer.run.policy_config.train_global_batch_size == 8
    # the baseline is the algorithm's state, saved with the checkpoint
    assert '"baseline"' in (tmp_path / "ckpt" / "step_2" / "trainer_state.json").read_text()


def check(tmp_path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([REINFORGE, "plugins", "check", *args], capture_output=True, text=True, env=installed_env(tmp_path))


@pytest.mark.integration
def test_plugins_check_runs_the_environment_suite_with_a_reply_that_calls(tmp_path):
    done = check(tmp_path, "calc_tag", "--reply", "<calc>2 + 3</calc>")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "7 passed" in done.stdout and "skipped" not in done.stdout  # the multi-turn test ran: the reply made it go on
    assert "warning" not in done.stdout.lower()
    single = check(tmp_path, "calc_tag")
    assert single.returncode == 0 and "6 passed, 1 skipped" in single.stdout


@pytest.mark.integration
def test_plugins_check_runs_the_algorithm_and_backend_suites(tmp_path):
    algorithm = check(tmp_path, "moving_baseline")
    assert algorithm.returncode == 0, algorithm.stdout[-3000:] + algorithm.stderr[-3000:]
    assert "4 passed" in algorithm.stdout and "warning" not in algorithm.stdout.lower()
    backend = check(tmp_path, "calculator_stop", "-k", "output_columns or stop_string or update_weights")
    assert backend.returncode == 0, backend.stdout[-3000:] + backend.stderr[-3000:]
    assert "warning" not in backend.stdout.lower()
