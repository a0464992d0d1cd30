"""A few bad inputs through the real `reinforge` executable: the console script reports them exactly as
the in-process runs of `test_bad_inputs.py` do (status 1, the message, no traceback)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from string import Template

import pytest

REINFORGE = str(Path(sys.executable).with_name("reinforge"))

CASES = [
    (("config", "show", "$C/nonutf8.yaml"), ("nonutf8.yaml is not UTF-8 text",)),
    (("config", "show", "$B", "x[/y]=1"), ("override 'x[/y]=1'", "key 'x[/y]' is not in the config")),
    (("config", "show", "$B", b"policy.model_name=\xff\xfe"), ("override 'policy.model_name=\\xff\\xfe'", "not valid YAML")),
    (
        ("--plugins", "$C/plugins/broken.toml", "config", "show", "$B", "env.name=my_env"),
        ("unknown environment 'my_env'", "ModuleNotFoundError: No module named 'not_a_real_module_xyz'"),
    ),
    (("train", "--config", "$B", "data.dataset=jsonl", "data.dataset_cfg={path: $C/huge.jsonl}"), ("line 4 of dataset file", "longer than 4,000,000 bytes")),
    (("eval", "generation.model_name=$C/ckpt/step_1"), ("is a reinforge training checkpoint", "reinforge convert")),
    (("convert", "--dcp-ckpt-path", "$C/ckpt/step_1", "--hf-ckpt-path", "$C/other-model"), ("is not empty: it holds another model",)),
]


def _arg(value: str | bytes, corpus: dict[str, str]) -> str | bytes:
    return os.fsencode(corpus["C"]).join(value.split(b"$C")) if isinstance(value, bytes) else Template(value).safe_substitute(corpus)


@pytest.mark.parametrize(("argv", "words"), CASES, ids=[" ".join(str(a) for a in argv)[:60] for argv, _ in CASES])
def test_console_script_reports_bad_input(argv, words, corpus):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run([REINFORGE, *(_arg(a, corpus) for a in argv)], capture_output=True, env=env)
    err = done.stderr.decode("utf-8", "replace")
    assert "Traceback" not in err, err[-3000:]
    assert done.returncode == 1, err[-3000:]
    flat = " ".join(err.split())
    for w in words:
        assert w in flat, f"{w!r} not in:\n{err[-3000:]}"


@pytest.mark.skipif(importlib.util.find_spec("sglang") is not None, reason="sglang is installed here")
def test_install_hint_keeps_its_extra_through_the_console_script(corpus):
    """rich used to read `[sglang]` in `pip install 'reinforge[sglang]'` as markup and drop it."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    argv = ["train", "--config", corpus["B"], "policy.generation.backend=sglang"]
    done = subprocess.run([REINFORGE, *argv], capture_output=True, text=True, env=env)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "pip install 'reinforge[sglang]'" in done.stderr
