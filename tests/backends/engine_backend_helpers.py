"""Scaffolding shared by the tests of the GPU-only engine adapters (`sglang`, `trtllm`) on their fake engines.

Those engines need an NVIDIA GPU, so `reinforge.testing.fake_engines` stands in for them: these
helpers start an adapter on its fake, give it prompts and weights, and check what every adapter
promises alike: a refit's record, a refused refit that sends nothing, no generation while asleep,
its registry entry, and the install hint when the engine is missing.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import torch

from reinforge.backends.generation.engine_common import plan_buckets
from reinforge.core.batch import Batch
from reinforge.core.errors import ReinforgeError
from reinforge.core.registry import Registry, RegistrySettings
from reinforge.core.run_config import PolicyConfig
from reinforge.core.sampling import SamplingParams
from reinforge.testing.conformance_generation import load_hf_weights

GREEDY = SamplingParams(temperature=0.0, max_new_tokens=8)
Backend = TypeVar("Backend")


def fake_policy(model_dir: Path) -> PolicyConfig:
    """The tiny model in float32 with 96 positions: what each adapter test starts its fake engine with."""
    return PolicyConfig(model_name=str(model_dir), precision="float32", max_total_sequence_length=96)


def started(backend_class: type[Backend], model_dir: Path, options: Any) -> Iterator[Backend]:
    """For a module fixture (`yield from started(...)`): the adapter on its fake engine, seed 0, shut down after."""
    backend = backend_class(fake_policy(model_dir), options, seed=0)
    yield backend
    backend.shutdown()


def arithmetic_prompts(backend: Any) -> Batch:
    """Two short prompts, tokenized by the adapter's own tokenizer and padded with its pad id."""
    ids = [backend.tokenizer(text, add_special_tokens=False)["input_ids"] for text in ("12 + 7 =", "3 * 4 =")]
    return Batch.from_sequences(ids, pad_id=backend.pad_token_id)


def refit_with_its_own_weights(backend_class: type[Backend], model_dir: Path, options: Any) -> tuple[Backend, list[str]]:
    """Start the adapter, refit it with the model folder's own weights, and check the refit's record.

    The record counts the buckets `plan_buckets` makes of them (at least 2: pass a small
    `refit_bucket_mb`), their bytes, and seconds within the call's own wall time. Returns the
    adapter and the weights' names in checkpoint order, the order they must reach the engine in.
    """
    backend = backend_class(fake_policy(model_dir), options, seed=0)
    weights = list(load_hf_weights(model_dir).items())
    sizes = [t.numel() * t.element_size() for _, t in weights]
    start = time.perf_counter()
    backend.update_weights(weights)
    wall = time.perf_counter() - start
    record = backend.last_refit
    assert (record.buckets, record.bytes) == (len(plan_buckets(sizes, options.refit_bucket_mb * 2**20)), sum(sizes))
    assert record.buckets >= 2, "pass a smaller refit_bucket_mb: this check needs several buckets"
    assert 0 < record.seconds <= wall  # the refit's own duration, not a clock reading
    return backend, [name for name, _ in weights]


def assert_refit_refused_before_sending(backend: Any, engine_calls: list, weights: list[tuple[str, torch.Tensor]], match: str) -> None:
    """A refit the adapter refuses (a wrong name or shape) raises a ReinforgeError matching `match` and sends the engine nothing."""
    before = len(engine_calls)
    with pytest.raises(ReinforgeError, match=match):
        backend.update_weights(weights)
    assert len(engine_calls) == before


def asleep_refuses_to_generate(backend: Any) -> None:
    """Put the adapter to sleep, check that it refuses to generate until woken, and wake it."""
    backend.sleep()
    with pytest.raises(ReinforgeError, match="wake"):
        backend.generate(arithmetic_prompts(backend), GREEDY)
    backend.wake()


def hide_module(monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    """Importing `module` or one of its submodules raises ImportError, as where the engine is not installed."""
    real_import = builtins.__import__

    def without_module(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == module or name.startswith(module + "."):
            raise ImportError(f"No module named '{module}'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_module)


def assert_listed_with_its_extra(name: str, config_class: type, module: str) -> None:
    """The registry knows the built-in backend `name`, its config class, and the extra that installs `module`."""
    registry = Registry.create(RegistrySettings(load_entry_points=False))
    assert registry.config_class("generation_backend", name) is config_class
    spec = registry.get("generation_backend", name)
    assert (spec.extra, spec.requires) == (name, (module,))
    assert spec.install_hint() == f"pip install 'reinforge[{name}]'"
