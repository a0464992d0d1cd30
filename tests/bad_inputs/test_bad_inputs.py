"""Every bad input a user can give the CLI exits non-zero with one paragraph naming the cause, never a traceback.

Each case is a `reinforge` command line run in-process through `reinforge.cli.main.main` (the
function the console script calls; `test_console_script.py` runs a few through the real
executable). `$C` is the corpus folder of `corpus.py`, `$M` the tiny model, `$B` the corpus's
base GRPO config (which trains fine: every case changes one thing).
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path
from string import Template
from typing import NamedTuple

import pytest

from reinforge.cli.main import main

REPO = Path(__file__).resolve().parents[2]
DPO_RECIPE = str(REPO / "examples" / "configs" / "dpo-arith-cpu.yaml")


class Case(NamedTuple):
    id: str
    argv: tuple[str, ...]
    words: tuple[str, ...]  # must all appear in the message (whitespace-normalised)
    rc: int = 1


def case(id: str, argv: str | tuple[str, ...], *words: str, rc: int = 1) -> Case:
    return Case(id, tuple(argv.split()) if isinstance(argv, str) else argv, words, rc)


TRAIN = ("train", "--config", "$B")
SHOW = ("config", "show", "$B")
DS = "data.dataset=jsonl"

CASES = [
    # ---------------------------------------------------------------- config files
    case("config-missing", "train --config $C/nope.yaml", "config file", "nope.yaml does not exist"),
    case("config-is-a-directory", "train --config $C/folder.yaml", "folder.yaml is a directory, not a YAML file"),
    case("config-not-utf8", "config show $C/nonutf8.yaml", "nonutf8.yaml is not UTF-8 text", "byte 0xe9 on line 2", "save it as UTF-8"),
    case("config-is-a-device", "config show /dev/zero", "config path /dev/zero is not a regular file"),
    case("config-empty", "config show $C/empty.yaml", "cannot tell which algorithm", "algorithm: NAME"),
    case("config-top-level-list", "config show $C/list.yaml", "top level must be a mapping, got list"),
    case("config-tab-indent", "config show $C/tab.yaml", "invalid YAML", "found character '\\t'", "line 3, column 1"),
    case("config-nested-too-deep", "config show $C/deep.yaml", "invalid YAML", "RecursionError"),
    case("config-duplicate-key", "config show $C/duplicate-key.yaml", "duplicate key 'policy' (first on line 2) at line 4"),
    case("config-billion-laughs", "config show $C/billion-laughs.yaml", "expands to more than 1,000,000 values through nested aliases"),
    case("override-self-referencing-alias", (*SHOW, "policy.model_name=&a [*a]"), "not valid YAML"),
    case("config-defaults-missing", "config show $C/orphan.yaml", "parent-that-is-gone.yaml does not exist", "named in `defaults:`"),
    case("config-defaults-loop", "config show $C/loop.yaml", "`defaults:` inheritance loops"),
    case("config-no-algorithm", "config show $C/noalgo.yaml", "cannot tell which algorithm", "known: dpo, grpo, sft"),
    case("config-algorithm-typo", "config show $C/typo-algo.yaml", "unknown algorithm 'grpoo'", "did you mean 'grpo'?"),
    # ---------------------------------------------------------------- overrides
    case("override-closing-markup-tag", (*SHOW, "x[/y]=1"), "override 'x[/y]=1'", "key 'x[/y]' is not in the config"),
    case("override-bracket-key", (*SHOW, "a[0]=1"), "override 'a[0]=1'", "'+a[0]=...'"),
    case("override-slash-key", (*SHOW, "policy/model_name=x"), "key 'policy/model_name' is not in the config"),
    case("override-markup-looking-value", (*SHOW, "policy.model_name=[bold]x[/bold]"), "override 'policy.model_name=[bold]x[/bold]'", "not valid YAML"),
    case("override-unclosed-list", (*SHOW, "policy.optimizer.betas=[0.9"), "override 'policy.optimizer.betas=[0.9'", "not valid YAML"),
    case("override-no-equals", (*SHOW, "policy.model_name"), "is not of the form key.path=value"),
    case("override-empty-key", (*SHOW, "=5"), "'=5' is not of the form key.path=value"),
    case("override-empty-part", (*SHOW, "policy..lr=1"), "is not of the form key.path=value"),
    case("override-not-utf8-argv", (*SHOW, "policy.model_name=\udcff\udcfe"), "override 'policy.model_name=", "not valid YAML"),
    case("override-algorithm-bad-yaml", (*SHOW, "algorithm=["), "override 'algorithm=['", "not valid YAML @ algorithm"),
    case("override-deep-value", (*SHOW, "policy.model_name=" + "[" * 3000 + "]" * 3000), "not valid YAML"),
    case("type-string-for-int", (*SHOW, "policy.train_global_batch_size=abc"), "expected an integer, got str 'abc'", "@ policy.train_global_batch_size"),
    case("negative-batch", (*SHOW, "policy.train_global_batch_size=-8"), "must be > 0: -8", "@ policy.train_global_batch_size"),
    case("zero-steps", (*SHOW, "grpo.max_num_steps=0"), "@ grpo.max_num_steps"),
    case("top-p-above-one", (*SHOW, "policy.generation.top_p=1.5"), "@ policy.generation.top_p"),
    case("unknown-key", (*SHOW, "policy.bogus=1"), "key 'policy.bogus' is not in the config"),
    case("literal-choice", (*SHOW, "cluster.executor=kubernetes"), "kubernetes", "@ cluster.executor"),
    case("mapping-expected", (*SHOW, "data.dataset_cfg=5"), "expected a mapping of ArithmeticDatasetConfig settings, got int 5"),
    case("unknown-plugin-option", (*SHOW, "env.env_cfg={num_wrkers: 2}"), "unknown key 'num_wrkers'", "@ env.env_cfg.num_wrkers"),
    case("env-workers-zero", (*SHOW, "env.env_cfg={num_workers: 0}"), "@ env.env_cfg.num_workers"),
    case("env-guard-rate-above-one", (*SHOW, "env.guard.max_failure_rate=2"), "@ env.guard.max_failure_rate"),
    case("dropped-share-negative", (*SHOW, "data.max_dropped_share=-0.1"), "@ data.max_dropped_share"),
    case("empty-stop-string", (*SHOW, 'policy.generation.stop_strings=[""]'), "must be a list of non-empty strings", "@ policy.generation.stop_strings"),
    case("negative-stop-token", (*SHOW, "policy.generation.stop_token_ids=[-1]"), "integers >= 0", "@ policy.generation.stop_token_ids"),
    case("infinite-learning-rate", (*SHOW, "policy.optimizer.lr=.inf"), "expected a finite number, got inf", "@ policy.optimizer.lr"),
    case("nan-temperature", (*SHOW, "policy.generation.temperature=.nan"), "@ policy.generation.temperature"),
    case("adam-beta-above-one", (*TRAIN, "policy.optimizer.betas=[1.5, 0.999]"), "each beta must be in [0, 1), got [1.5, 0.999]", "@ policy.optimizer.betas"),
    case("negative-seed", (*TRAIN, "grpo.seed=-1"), "must be a non-negative integer", "@ grpo.seed"),
    case(
        "one-generation-per-prompt",
        (*TRAIN, "grpo.num_generations_per_prompt=1", "grpo.num_prompts_per_step=8"),
        "every advantage is 0", "leave-one-out baseline needs at least 2 samples per prompt", "@ grpo.num_generations_per_prompt",
    ),
    case("unknown-logger", (*SHOW, "logger.loggers=[jsonl, tensorbord]"), "unknown logger 'tensorbord'", "did you mean 'tensorboard'?", "@ logger.loggers"),
    case("eval-config-given-to-train", ("train", "--config", str(REPO / "reinforge/eval/aime24.yaml")), "cannot tell which algorithm"),
    case("batch-not-a-multiple", (*SHOW, "grpo.num_generations_per_prompt=3"), "must be a multiple of policy.train_global_batch_size"),
    # ---------------------------------------------------------------- asynchronous GRPO (grpo.async_grpo)
    case("async-negative-age", (*SHOW, "grpo.async_grpo.enabled=true", "grpo.async_grpo.max_trajectory_age_steps=-1"),
         "grpo.async_grpo.max_trajectory_age_steps must be >= 0, got -1", "@ grpo.async_grpo.max_trajectory_age_steps"),
    case("async-without-is-correction", (*SHOW, "grpo.async_grpo.enabled=true"),
         "max_trajectory_age_steps=1 trains on groups generated by older weights",
         "set loss_fn.use_importance_sampling_correction=true"),
    case("async-with-dynamic-sampling", (*SHOW, "grpo.async_grpo.enabled=true", "grpo.async_grpo.max_trajectory_age_steps=0", "grpo.use_dynamic_sampling=true"),
         "grpo.async_grpo.enabled with grpo.use_dynamic_sampling is not supported yet"),
    case("async-with-forced-ratio", (*SHOW, "grpo.async_grpo.enabled=true", "grpo.async_grpo.max_trajectory_age_steps=0", "loss_fn.force_on_policy_ratio=true"),
         "grpo.async_grpo.enabled with loss_fn.force_on_policy_ratio", "turn loss_fn.force_on_policy_ratio off"),
    case("async-on-colocated-ray", (*SHOW, "grpo.async_grpo.enabled=true", "grpo.async_grpo.max_trajectory_age_steps=0", "cluster.executor=ray"),
         "cluster.colocated=true", "nothing can overlap; set cluster.colocated=false"),
    case("micro-not-dividing-global", (*SHOW, "policy.train_micro_batch_size=3"), "train_global_batch_size (8) must be a multiple of train_micro_batch_size (3)"),
    case("dpo-micro-odd", ("config", "show", DPO_RECIPE, "policy.train_micro_batch_size=3"), "train_micro_batch_size (3) counts rows and must be even"),
    case(
        "dpo-pairs-vs-rows",
        ("config", "show", DPO_RECIPE, "policy.train_global_batch_size=3", "policy.train_micro_batch_size=4"),
        "train_global_batch_size (3 pairs = 6 rows) must be a multiple of train_micro_batch_size (4 rows)",
    ),
    # ---------------------------------------------------------------- plugins
    case("unknown-environment", (*SHOW, "env.name=mth"), "unknown environment 'mth'", "did you mean 'math'?"),
    case("unknown-dataset", (*SHOW, "data.dataset=arithmatic"), "unknown dataset 'arithmatic'", "did you mean 'arithmetic'?"),
    case("wrong-kind-plugin", (*SHOW, "policy.generation.backend=dtensor"), "'dtensor' is a training backend, not a generation backend"),
    case("plugins-file-missing", "--plugins $C/plugins/nope.toml plugins list", "nope.toml", "does not exist"),
    case("plugins-file-is-a-directory", "--plugins $C/plugins plugins list", "named by --plugins"),
    case("plugins-file-bad-toml", "--plugins $C/plugins/bad-syntax.toml plugins list", "bad-syntax.toml", "TOML"),
    case("plugins-local-module-missing", "--plugins $C/plugins/missing-local.toml plugins list", "not_written_yet.py", "does not exist"),
    case(
        "plugin-import-error-shown",
        ("--plugins", "$C/plugins/broken.toml", *SHOW, "env.name=my_env"),
        "unknown environment 'my_env'",
        "failed to load",
        "broken_plugin.py: ModuleNotFoundError: No module named 'not_a_real_module_xyz'",
    ),
    case("plugins-show-unknown", "plugins show nosuchplugin", "unknown plugin 'nosuchplugin'"),
    case(
        "plugin-implementation-raises-on-import",
        ("--plugins", "$C/plugins/raising-impl.toml", *TRAIN, "env.name=licensed_env", "env.env_cfg=null"),
        "environment 'licensed_env' could not be loaded", "its module 'licensed_env_impl' raised RuntimeError: the licence server is down",
    ),
    case(
        "install-hint-keeps-extra",
        (*TRAIN, "policy.generation.backend=sglang"),
        "generation backend 'sglang'",
        "pip install 'reinforge[sglang]'",
    ),
    # ---------------------------------------------------------------- model folders
    case("model-missing", (*TRAIN, "policy.model_name=$C/models/nope"), "model folder", "does not exist", "policy.model_name"),
    case("model-is-a-file", (*TRAIN, "policy.model_name=$C/a-file-not-a-model"), "is a file", "Hugging Face model folder"),
    case("model-without-tokenizer", (*TRAIN, "policy.model_name=$C/models/no-tokenizer"), "has no tokenizer files", "tokenizer.json"),
    case("safetensors-truncated", (*TRAIN, "policy.model_name=$C/models/truncated"), "model.safetensors", "is damaged", "truncated"),
    case("safetensors-corrupt-header", (*TRAIN, "policy.model_name=$C/models/corrupt-header"), "is damaged", "header is not valid safetensors JSON"),
    case("safetensors-header-too-large", (*TRAIN, "policy.model_name=$C/models/header-claims-too-much"), "is damaged", "header claims 1,000,000,000,000,000 bytes"),
    case("safetensors-oversized", (*TRAIN, "policy.model_name=$C/models/two-files-joined"), "is damaged", "bytes more than its header describes"),
    case("shared-prompts-with-packing", (*TRAIN, "policy.backend_cfg={share_prompt_forward: true, sequence_packing: true}"),
         "share_prompt_forward and sequence_packing are both on", "a pass is either packed rows or prompts shared"),
    case("safetensors-empty", (*TRAIN, "policy.model_name=$C/models/empty-weights"), "is damaged", "the file is empty"),
    case("model-no-config", (*TRAIN, "policy.model_name=$C/models/no-config"), "has no config.json"),
    case("model-bad-config-json", (*TRAIN, "policy.model_name=$C/models/bad-config"), "config.json", "is not valid JSON"),
    case("tokenizer-json-corrupt", (*TRAIN, "policy.model_name=$C/models/bad-tokenizer-json"), "tokenizer.json (from policy.model_name) is not valid JSON"),
    case("tokenizer-config-corrupt", (*TRAIN, "policy.model_name=$C/models/bad-tokenizer-config"), "tokenizer_config.json", "is not valid JSON"),
    case("generation-config-corrupt", (*TRAIN, "policy.model_name=$C/models/bad-generation-config"), "generation_config.json", "is not valid JSON"),
    case("model-type-unknown", (*TRAIN, "policy.model_name=$C/models/unknown-model-type"), "no_such_architecture", "policy.model_name"),
    case("model-no-weights", (*TRAIN, "policy.model_name=$C/models/no-weights"), "has no weights"),
    case("model-missing-shard", (*TRAIN, "policy.model_name=$C/models/missing-shard"), "is incomplete", "model-00002-of-00002.safetensors"),
    case(
        "checkpoint-as-model-train",
        (*TRAIN, "policy.model_name=$C/ckpt/step_1/policy"),
        "is a reinforge training checkpoint, not a Hugging Face model folder",
        "reinforge convert --dcp-ckpt-path",
    ),
    case("tokenizer-folder-without-tokenizer", (*TRAIN, "policy.tokenizer_name=$C/models/tokenizer-less"), "policy.tokenizer_name", "has no tokenizer files"),
    case("tokenizer-folder-missing", (*TRAIN, "policy.tokenizer_name=$C/models/nope"), "tokenizer folder", "does not exist; check policy.tokenizer_name"),
    case("chat-template-not-utf8", (*TRAIN, "policy.chat_template=$C/latin1-prompt.txt"), "policy.chat_template file", "is not UTF-8 text"),
    case("chat-template-directory", (*TRAIN, "policy.chat_template=$C/models"), "policy.chat_template", "is neither null, 'default', nor an existing file"),
    case("prompt-file-not-utf8", (*TRAIN, "data.prompt_file=$C/latin1-prompt.txt"), "prompt file", "is not UTF-8 text"),
    case("prompt-file-without-slot", (*TRAIN, "data.prompt_file=$C/no-slot-prompt.txt"), "must contain exactly one {}"),
    # ---------------------------------------------------------------- data
    case("data-file-empty", (*TRAIN, DS, "data.dataset_cfg={path: $C/empty.jsonl}"), "empty.jsonl' is empty (no rows)"),
    case("data-file-blank-lines", (*TRAIN, DS, "data.dataset_cfg={path: $C/blank.jsonl}"), "blank.jsonl' is empty (no rows)"),
    case("data-file-not-utf8", (*TRAIN, DS, "data.dataset_cfg={path: $C/latin1.jsonl}"), "line 4 of dataset file", "is not UTF-8 text", "byte 0xe9"),
    case("data-line-not-json", (*TRAIN, DS, "data.dataset_cfg={path: $C/badjson.jsonl}"), "line 2 (row 1, counting from 0)", "is not valid JSON"),
    case("data-line-a-list", (*TRAIN, DS, "data.dataset_cfg={path: $C/listrow.jsonl}"), "line 2 (row 1, counting from 0)", "is a JSON list, not an object"),
    case("data-huge-row", (*TRAIN, DS, "data.dataset_cfg={path: $C/huge.jsonl}"), "line 4 of dataset file", "huge.jsonl", "longer than 4,000,000 bytes", "max_row_bytes"),
    case("data-wrong-columns", (*TRAIN, DS, "data.dataset_cfg={path: $C/wrongcols.jsonl}"), "has no column 'problem', 'answer'", "input_key"),
    case("data-null-answer", (*TRAIN, DS, "data.dataset_cfg={path: $C/nullanswer.jsonl}"), "row 1", "has no value in column 'answer'"),
    case("data-path-is-a-directory", (*TRAIN, DS, "data.dataset_cfg={path: $C/dir.jsonl}"), "dir.jsonl' is a directory"),
    case("data-parquet-not-parquet", (*TRAIN, DS, "data.dataset_cfg={path: $C/fake.parquet}"), "could not read file", "fake.parquet", "Parquet magic bytes not found"),
    case(
        "more-prompts-per-step-than-data",
        (*TRAIN, "grpo.num_prompts_per_step=64", "policy.train_global_batch_size=256"),
        "only 40 prompts for batches of 64",
    ),
    case(
        "sequence-limit-below-prompt-length",
        (*TRAIN, "policy.max_total_sequence_length=10"),
        "more than policy.max_total_sequence_length=10",
    ),
    case("data-file-is-a-device", (*TRAIN, DS, "data.dataset_cfg={path: $C/zero.jsonl}"), "zero.jsonl' is not a regular file"),
    case("prompt-file-is-a-device", (*TRAIN, "data.prompt_file=/dev/zero"), "prompt file '/dev/zero' is not a regular file"),
    case("prompt-file-is-a-directory", (*TRAIN, "data.prompt_file=$C/models"), "prompt file", "is a directory"),
    case("data-file-missing", (*TRAIN, DS, "data.dataset_cfg={path: $C/missing.jsonl}"), "missing.jsonl' does not exist"),
    case("data-file-csv", (*TRAIN, DS, "data.dataset_cfg={path: $C/data.csv}"), "data.csv' is a .csv file", "data.dataset_cfg.path"),
    case(
        "sft-messages-a-plain-string",
        ("train", "--config", str(REPO / "examples/configs/sft-arith-cpu.yaml"), "policy.model_name=$M", "data.dataset=sft_jsonl",
         "data.dataset_cfg={path: $C/sft-string-messages.jsonl}", "data.val_dataset=null", "data.val_dataset_cfg=null", "logger.log_dir=$C/out/sft"),
        "key 'messages': the value is a plain string, not a list of {role, content} messages", "input_key / output_key",
    ),
    case(
        "prompts-dropped-for-length",
        (*TRAIN, "data.max_input_seq_length=16"),
        "29 of 40 prompts exceed data.max_input_seq_length=16 and were dropped",
        "more than data.max_dropped_share=0.5",
    ),
    case(
        "sft-examples-all-too-long",
        ("train", "--config", str(REPO / "examples/configs/sft-arith-cpu.yaml"), "policy.model_name=$M",
         "policy.max_total_sequence_length=8", "logger.log_dir=$C/out/sft"),
        "150 of 150 examples exceed policy.max_total_sequence_length=8 and were dropped (training set)",
    ),
    case(
        "dpo-pairs-all-too-long",
        ("train", "--config", DPO_RECIPE, "policy.model_name=$M", "policy.max_total_sequence_length=8", "logger.log_dir=$C/out/dpo"),
        "120 of 120 examples exceed policy.max_total_sequence_length=8 and were dropped (training set)",
    ),
    case(
        "sft-file-without-columns",
        ("train", "--config", str(REPO / "examples/configs/sft-arith-cpu.yaml"), "policy.model_name=$M", "data.dataset=sft_jsonl",
         "data.dataset_cfg={path: $C/sft-nocols.jsonl}", "data.val_dataset=null", "data.val_dataset_cfg=null", "logger.log_dir=$C/out/sft"),
        "has no column 'messages'",
    ),
    case(
        "preference-file-not-utf8",
        ("train", "--config", DPO_RECIPE, "policy.model_name=$M", "data.dataset=preference_jsonl",
         "data.dataset_cfg={path: $C/prefs-latin1.jsonl}", "logger.log_dir=$C/out/dpo"),
        "line 1 of dataset file", "is not UTF-8 text",
    ),
    # ---------------------------------------------------------------- convert
    case("convert-hf-folder-as-checkpoint", "convert --dcp-ckpt-path $M --hf-ckpt-path $C/out/hf1", "is a Hugging Face model folder already"),
    case("convert-into-existing-file", "convert --dcp-ckpt-path $C/ckpt/step_1/policy --hf-ckpt-path $C/an-existing-file", "is an existing file"),
    case("convert-over-another-model", "convert --dcp-ckpt-path $C/ckpt/step_1 --hf-ckpt-path $C/other-model", "is not empty: it holds another model", "--force"),
    case("convert-missing-checkpoint", "convert --dcp-ckpt-path $C/ckpt/step_9/policy --hf-ckpt-path $C/out/hf2", "does not exist"),
    case("convert-file-as-checkpoint", "convert --dcp-ckpt-path $C/base.yaml --hf-ckpt-path $C/out/hf3", "is a file"),
    case("convert-folder-without-checkpoint", "convert --dcp-ckpt-path $C/run-no-metrics --hf-ckpt-path $C/out/hf4", "holds no training checkpoint"),
    # ---------------------------------------------------------------- eval
    case(
        "eval-checkpoint-as-model",
        "eval generation.model_name=$C/ckpt/step_1",
        "generation.model_name", "is a reinforge training checkpoint", "reinforge convert",
    ),
    case("eval-missing-model", "eval generation.model_name=$C/models/nope", "does not exist", "generation.model_name"),
    case("eval-k-above-n", "eval generation.model_name=$M eval.num_tests_per_prompt=2 eval.k_value=4", "k_value (4) cannot exceed num_tests_per_prompt (2)"),
    case("eval-save-path-directory", "eval generation.model_name=$M eval.save_path=$C/models", "eval.save_path", "is a directory"),
    case(
        "eval-save-path-under-a-file",
        "eval generation.model_name=$M eval.save_path=$C/an-existing-file/samples.jsonl",
        "eval.save_path", "is under", "an-existing-file', which is a file",
    ),
    case(
        "eval-tokenizer-folder-missing",
        "eval generation.model_name=$M generation.tokenizer_name=$C/models/nope",
        "tokenizer folder", "does not exist; check generation.tokenizer_name",
    ),
    case(
        "eval-tokenizer-folder-without-tokenizer",
        "eval generation.model_name=$M generation.tokenizer_name=$C/models/tokenizer-less",
        "generation.tokenizer_name", "has no tokenizer files", "set generation.tokenizer_name to a folder",
    ),
    # ---------------------------------------------------------------- plot, model build
    case("plot-missing-run", "plot $C/no-such-run", "run directory", "does not exist"),
    case("plot-no-metrics", "plot $C/run-no-metrics", "no metrics.jsonl"),
    case("plot-metrics-not-utf8", "plot $C/run-latin1", "metrics file", "is not UTF-8 text"),
    case("plot-garbage-line", "plot $C/run-garbage", "metrics.jsonl:2 is not a metrics record"),
    case("plot-out-is-a-file", "plot $C/run-good --out $C/an-existing-file", "--out", "is an existing file; name a folder for the charts"),
    case("model-build-out-is-a-file", "model build --size tiny --out $C/an-existing-file", "--out", "is an existing file"),
    case("model-build-unknown-size", "model build --size huge --out $C/out/m", "unknown tiny-model size 'huge'"),
    case("model-build-negative-warmup", "model build --size tiny --warmup-steps -5 --out $C/out/m", "warmup_steps must be >= 0"),
    # ---------------------------------------------------------------- the command line itself
    case("unknown-subcommand", "trian --config x.yaml", "invalid choice: 'trian'", rc=2),
    case("train-without-config", "train", "the following arguments are required: --config", rc=2),
    case("not-a-number-flag", "model build --warmup-steps many --out x", "invalid int value: 'many'", rc=2),
]


class _CurrentStderr:
    """Whatever sys.stderr is when written to (a test's capture, or the real one)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        if not sys.stderr.closed:
            sys.stderr.flush()


@pytest.fixture(autouse=True, scope="module")
def library_logs_follow_stderr():
    """datasets and transformers give their loggers a handler bound to the sys.stderr of the moment they were
    first used, which in one pytest process is an earlier test's (closed) capture; make it follow sys.stderr."""
    import datasets  # noqa: F401 - sets up its logger
    import transformers  # noqa: F401

    patched = [h for name in ("datasets", "transformers") for h in logging.getLogger(name).handlers if type(h) is logging.StreamHandler]
    saved = [h.stream for h in patched]
    for handler in patched:
        handler.stream = _CurrentStderr()
    yield
    for handler, stream in zip(patched, saved):
        handler.stream = stream


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """`reinforge ARGV` in this process: (exit status, stdout + stderr); argparse's exits count as statuses."""
    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return rc, out.out + out.err


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("bad", CASES, ids=[c.id for c in CASES])
def test_bad_input_gives_a_clear_error(bad: Case, corpus: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    if bad.id == "install-hint-keeps-extra" and importlib.util.find_spec("sglang") is not None:
        pytest.skip("sglang is installed here")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    argv = [Template(a).safe_substitute(corpus) for a in bad.argv]
    rc, output = run_cli(argv, capsys)
    flat = " ".join(output.split())
    assert "Traceback" not in output, output[-3000:]
    assert rc == bad.rc, output[-3000:]
    for words in bad.words:
        assert " ".join(Template(words).safe_substitute(corpus).split()) in flat, f"{words!r} not in:\n{output[-3000:]}"


def test_a_valid_dpo_batch_is_accepted(corpus: dict[str, str], capsys: pytest.CaptureFixture[str]):
    """2 pairs per step are 4 rows: a micro batch of 4 rows is valid (it used to be compared with the 2 pairs)."""
    rc, output = run_cli(["config", "show", DPO_RECIPE, "policy.train_global_batch_size=2", "policy.train_micro_batch_size=4"], capsys)
    assert rc == 0, output
    assert "train_global_batch_size: 2" in output and "train_micro_batch_size: 4" in output
