"""The files a hostile-but-realistic user feeds `reinforge`: broken configs, data, model folders, plugins.

`build_corpus(root, model)` writes them all once (about a second, plus a 30 MB data file) under
`root`; the cases in `test_bad_inputs.py` name them with `$C` (this folder) and `$M` (the tiny model).
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import yaml

# A GRPO run on the tiny model that fails nowhere: every case changes one thing.
BASE_CONFIG = {
    "algorithm": "grpo",
    "grpo": {"num_prompts_per_step": 2, "num_generations_per_prompt": 4, "max_num_steps": 1, "val_period": 0, "val_at_start": False},
    "policy": {
        "model_name": "$M",
        "precision": "float32",
        "train_global_batch_size": 8,
        "train_micro_batch_size": 4,
        "logprob_batch_size": 8,
        "max_total_sequence_length": 96,
        "backend_cfg": None,
        "generation": {"backend": "hf", "backend_cfg": None, "max_new_tokens": 8},
    },
    "data": {
        "dataset": "arithmetic",
        "dataset_cfg": {"split": "train", "num_samples": 40, "num_validation_samples": 8},
        "prompt_file": None,
        "max_input_seq_length": 64,
    },
    "env": {"name": "math", "env_cfg": {"num_workers": 1}},
    "checkpointing": {"enabled": False},
    "logger": {"log_dir": "$C/out/logs", "loggers": ["jsonl"]},
    "cluster": {"executor": "local"},
}

BROKEN_PLUGIN = '''
import not_a_real_module_xyz  # the plugin's dependency is not installed
from reinforge.core.hookspecs import hookimpl

@hookimpl
def reinforge_register_environments(register):
    register("my_env", "broken_plugin:Env")
'''


# A plugin whose registration is fine but whose implementation module raises when imported.
RAISING_ENV_PLUGIN = '''
from reinforge.core.hookspecs import hookimpl

@hookimpl
def reinforge_register_environments(register):
    register("licensed_env", "licensed_env_impl:Env")
'''


def build_corpus(root: Path, model: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(BASE_CONFIG, sort_keys=False).replace("$M", str(model)).replace("$C", str(root))
    (root / "base.yaml").write_text(text)
    _configs(root)
    _data(root)
    _models(root, model)
    _checkpoint(root / "ckpt" / "step_1")
    _plugins(root)
    _runs(root)


def _configs(root: Path) -> None:
    (root / "nonutf8.yaml").write_bytes(b"algorithm: grpo\n# caf\xe9 in Latin-1\n")
    (root / "empty.yaml").write_text("")
    (root / "list.yaml").write_text("- algorithm\n- grpo\n")
    (root / "tab.yaml").write_text("algorithm: grpo\ngrpo:\n\tmax_num_steps: 3\n")
    (root / "deep.yaml").write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    (root / "orphan.yaml").write_text("defaults: parent-that-is-gone.yaml\nalgorithm: grpo\n")
    (root / "loop.yaml").write_text("defaults: loop.yaml\n")
    (root / "noalgo.yaml").write_text("policy:\n  model_name: x\n")
    (root / "typo-algo.yaml").write_text("algorithm: grpoo\n")
    (root / "duplicate-key.yaml").write_text("algorithm: grpo\npolicy:\n  model_name: a\npolicy:\n  precision: float32\n")
    laughs = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi"):  # 9 ** 9 values once expanded
        laughs.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]")
    (root / "billion-laughs.yaml").write_text("algorithm: grpo\n" + "\n".join(laughs) + "\n")
    (root / "latin1-prompt.txt").write_bytes(b"R\xe9sous: {}\n")
    (root / "no-slot-prompt.txt").write_text("Solve this problem.\n")
    (root / "folder.yaml").mkdir()


def _data(root: Path) -> None:
    good = [{"problem": f"What is {i} + 1?", "answer": str(i + 1)} for i in range(6)]
    lines = [json.dumps(r) for r in good]
    (root / "empty.jsonl").write_text("")
    (root / "blank.jsonl").write_text("\n   \n\n")
    (root / "latin1.jsonl").write_bytes(("\n".join(lines[:3]) + "\n").encode() + b'{"problem": "caf\xe9 + 1?", "answer": "2"}\n')
    (root / "badjson.jsonl").write_text(lines[0] + "\n" + '{"problem": "2 + 2", "answer": \n')
    (root / "listrow.jsonl").write_text(lines[0] + "\n[1, 2, 3]\n")
    (root / "wrongcols.jsonl").write_text('{"question": "1 + 1", "solution": "2"}\n')
    (root / "nullanswer.jsonl").write_text(lines[0] + "\n" + '{"problem": "2 + 2", "answer": null}\n')
    (root / "dir.jsonl").mkdir()
    with (root / "huge.jsonl").open("w") as f:  # one 30 MB row among ordinary ones
        f.write("\n".join(lines[:3]) + "\n")
        f.write(json.dumps({"problem": "What is " + "1 + " * 7_500_000 + "1?", "answer": "1"}) + "\n")
        f.write("\n".join(lines[3:]) + "\n")
    (root / "zero.jsonl").symlink_to("/dev/zero")  # endless, and no newline: must not be read whole
    (root / "fake.parquet").write_text("a text file with a parquet name\n")
    (root / "sft-nocols.jsonl").write_text('{"question": "1 + 1", "reply": "2"}\n')
    (root / "prefs-latin1.jsonl").write_bytes(b'{"prompt": "caf\xe9", "chosen": "a", "rejected": "b"}\n')
    (root / "sft-string-messages.jsonl").write_text('{"messages": "What is 1 + 1? It is 2."}\n')
    (root / "data.csv").write_text("problem,answer\nWhat is 1 + 1?,2\n")


def _models(root: Path, model: Path) -> None:
    models = root / "models"

    def copy(name: str) -> Path:
        target = models / name
        shutil.copytree(model, target)
        return target

    for name in ("no-tokenizer",):
        folder = copy(name)
        for f in folder.iterdir():
            if f.name.startswith("tokenizer") or f.name == "chat_template.jinja":
                f.unlink()
    (copy("truncated") / "model.safetensors").open("r+b").truncate(1000)
    corrupt = copy("corrupt-header") / "model.safetensors"
    data = bytearray(corrupt.read_bytes())
    data[8:40] = b"this is not the JSON header....."
    corrupt.write_bytes(bytes(data))
    claims = copy("header-claims-too-much") / "model.safetensors"
    data = bytearray(claims.read_bytes())
    data[0:8] = struct.pack("<Q", 10**15)
    claims.write_bytes(bytes(data))
    joined = copy("two-files-joined") / "model.safetensors"
    joined.write_bytes(joined.read_bytes() * 2)
    (copy("empty-weights") / "model.safetensors").write_bytes(b"")
    (copy("no-config") / "config.json").unlink()
    (copy("bad-config") / "config.json").write_text('{"model_type": "qwen2", ')
    (copy("no-weights") / "model.safetensors").unlink()
    (copy("bad-tokenizer-json") / "tokenizer.json").write_text('{"version": ')
    (copy("bad-tokenizer-config") / "tokenizer_config.json").write_text('{"tokenizer_class": ')
    (copy("bad-generation-config") / "generation_config.json").write_text("{")
    (copy("unknown-model-type") / "config.json").write_text('{"model_type": "no_such_architecture"}')
    index = copy("missing-shard")
    (index / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"lm_head.weight": "model-00002-of-00002.safetensors"}})
    )
    tokenizer_less = models / "tokenizer-less"
    tokenizer_less.mkdir()
    (tokenizer_less / "config.json").write_text("{}")
    (root / "a-file-not-a-model").write_text("hello")


def _checkpoint(step: Path) -> None:
    """The layout of a reinforge checkpoint (what the input checks look at; nothing in it is read)."""
    (step / "policy" / "dcp").mkdir(parents=True)
    (step / "policy" / "dcp" / ".metadata").write_bytes(b"")
    (step / "training_info.json").write_text('{"step": 1}')
    (step / "config.yaml").write_text("algorithm: grpo\n")


def _plugins(root: Path) -> None:
    plugins = root / "plugins"
    plugins.mkdir()
    (plugins / "broken_plugin.py").write_text(BROKEN_PLUGIN)
    (plugins / "broken.toml").write_text('[plugins]\nlocal = ["broken_plugin.py"]\n')
    (plugins / "bad-syntax.toml").write_text("[plugins\nlocal = \n")
    (plugins / "missing-local.toml").write_text('[plugins]\nlocal = ["not_written_yet.py"]\n')
    (plugins / "licensed_env_plugin.py").write_text(RAISING_ENV_PLUGIN)
    (plugins / "licensed_env_impl.py").write_text('raise RuntimeError("the licence server is down")\n')
    (plugins / "raising-impl.toml").write_text('[plugins]\nlocal = ["licensed_env_plugin.py"]\n')


def _runs(root: Path) -> None:
    (root / "run-no-metrics").mkdir()
    latin1 = root / "run-latin1"
    latin1.mkdir()
    (latin1 / "metrics.jsonl").write_bytes(b'{"step": 1, "train/reward_mean": 0.5}\n{"step": 2, "note": "caf\xe9"}\n')
    garbage = root / "run-garbage"
    garbage.mkdir()
    (garbage / "metrics.jsonl").write_text('{"step": 1, "train/reward_mean": 0.5}\nnot json at all\n{"step": 2}\n')
    good = root / "run-good"
    good.mkdir()
    (good / "metrics.jsonl").write_text('{"step": 1, "train/reward_mean": 0.5}\n{"step": 2, "train/reward_mean": 0.75}\n')
    (root / "an-existing-file").write_text("keep me")
    other = root / "other-model"
    other.mkdir()
    (other / "config.json").write_text("{}")
