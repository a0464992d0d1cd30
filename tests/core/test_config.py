"""Typed configs: inheritance, overrides, strict structuring, all errors at once, round trips."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any, Literal

import attrs
import pytest
from attrs import validators as v

from reinforge.core.config import apply_overrides, doc, dump_yaml, load_yaml, plugin_options, structure
from reinforge.core.errors import ConfigError, PluginError


@attrs.define(kw_only=True, frozen=True)
class EngineOptions:
    block_size: int = doc("tokens per block", default=16, validator=v.gt(0))
    eager: bool = doc("no graphs", default=True)


@attrs.define(kw_only=True, frozen=True)
class Optim:
    lr: float = doc("learning rate", default=1e-3, validator=v.gt(0))
    betas: tuple[float, float] = doc("betas", default=(0.9, 0.999))


@attrs.define(kw_only=True, frozen=True)
class Policy:
    model_name: str = doc("model")
    batch: int = doc("batch", default=8, validator=v.gt(0))
    precision: Literal["float32", "bfloat16"] = doc("dtype", default="float32")
    stop: tuple[str, ...] = doc("stops", default=())
    top_k: int | None = doc("top k", default=None)
    optimizer: Optim = doc("optim", factory=Optim)
    backend: str = doc("engine", default="fast")
    backend_cfg: Any = plugin_options("generation_backend", "backend")


@attrs.define(kw_only=True, frozen=True)
class Run:
    policy: Policy = doc("policy")
    seed: int = doc("seed", default=0)
    tags: tuple[str, ...] = doc("tags", default=())


def lookup(kind: str, name: str) -> type | None:
    if name == "fast":
        return EngineOptions
    if name == "plain":
        return None
    raise PluginError(f"unknown generation backend '{name}'; did you mean 'fast'? known: fast, plain")


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def load(path: Path, overrides=(), origins=None) -> Run:
    origins = {} if origins is None else origins
    raw = apply_overrides(load_yaml(path, origins), list(overrides), schema=Run, origins=origins)
    return structure(raw, Run, lookup=lookup, origins=origins, source=str(path))


def test_defaults_chain_merges_key_by_key(tmp_path):
    write(tmp_path, "base.yaml", "policy: {model_name: base, batch: 4, optimizer: {lr: 0.1}}\nseed: 1\n")
    write(tmp_path, "mid.yaml", "defaults: base.yaml\npolicy: {batch: 16}\n")
    sub = tmp_path / "sub"
    sub.mkdir()
    leaf = write(sub, "leaf.yaml", "defaults: ../mid.yaml\npolicy: {optimizer: {betas: [0.8, 0.9]}}\n")
    run = load(leaf)
    assert run.policy.model_name == "base" and run.policy.batch == 16 and run.seed == 1
    assert run.policy.optimizer == Optim(lr=0.1, betas=(0.8, 0.9))


def test_defaults_list_merges_in_order(tmp_path):
    write(tmp_path, "a.yaml", "policy: {model_name: a, batch: 2}\nseed: 5\n")
    write(tmp_path, "b.yaml", "policy: {model_name: b}\n")
    leaf = write(tmp_path, "leaf.yaml", "defaults: [a.yaml, b.yaml]\nseed: 7\n")
    run = load(leaf)
    assert (run.policy.model_name, run.policy.batch, run.seed) == ("b", 2, 7)


def test_defaults_cycle_is_reported(tmp_path):
    write(tmp_path, "x.yaml", "defaults: y.yaml\n")
    write(tmp_path, "y.yaml", "defaults: x.yaml\n")
    with pytest.raises(ConfigError, match="loops"):
        load_yaml(tmp_path / "x.yaml")


def test_missing_file_and_bad_yaml_are_reported(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_yaml(tmp_path / "nope.yaml")
    bad = write(tmp_path, "bad.yaml", "policy: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_yaml(bad)


@pytest.mark.parametrize(
    ("override", "check"),
    [
        ("policy.batch=32", lambda r: r.policy.batch == 32),
        ("policy.optimizer.lr=2e-6", lambda r: r.policy.optimizer.lr == 2e-6),
        ("policy.optimizer.lr=1", lambda r: r.policy.optimizer.lr == 1.0 and isinstance(r.policy.optimizer.lr, float)),
        ("policy.model_name=/ckpts/8K/hf", lambda r: r.policy.model_name == "/ckpts/8K/hf"),
        ("policy.precision=bfloat16", lambda r: r.policy.precision == "bfloat16"),
        ("policy.backend_cfg.eager=false", lambda r: r.policy.backend_cfg.eager is False),
        ("policy.top_k=null", lambda r: r.policy.top_k is None),
        ("policy.top_k=50", lambda r: r.policy.top_k == 50),
        ("policy.stop=['</s>', '###']", lambda r: r.policy.stop == ("</s>", "###")),
        ("policy.optimizer.betas=[0.5,0.6]", lambda r: r.policy.optimizer.betas == (0.5, 0.6)),
    ],
)
def test_dotted_overrides_of_every_scalar_type_and_lists(tmp_path, override, check):
    path = write(tmp_path, "r.yaml", "policy: {model_name: m, top_k: 5, backend_cfg: {eager: true}}\n")
    assert check(load(path, [override]))


def test_plus_adds_a_key_and_plain_override_of_unknown_key_fails(tmp_path):
    path = write(tmp_path, "r.yaml", "policy: {model_name: m}\n")
    assert load(path, ["+tags=[a, b]"]).tags == ("a", "b")  # `tags` is not in the file
    assert load(path, ["tags=[c]"]).tags == ("c",)  # a declared field may be set without '+'
    with pytest.raises(ConfigError) as err:
        load(path, ["policy.batchsize=3"])
    assert "'+policy.batchsize=...'" in str(err.value)
    with pytest.raises(ConfigError) as err:  # '+' adds it, and then the schema rejects it
        load(path, ["+policy.batchsize=3"])
    assert "unknown key 'batchsize'; did you mean 'batch'? @ policy.batchsize (from command line)" in str(err.value)


def test_malformed_override_is_reported(tmp_path):
    path = write(tmp_path, "r.yaml", "policy: {model_name: m}\n")
    with pytest.raises(ConfigError, match="not of the form"):
        load(path, ["policy.batch"])


def test_unknown_key_wrong_type_and_bad_range_are_all_reported_with_paths_and_files(tmp_path):
    path = write(
        tmp_path,
        "r.yaml",
        """
        policy:
          model_name: m
          batch: 0
          optimizer: {lr: fast}
          precision: float16
          backend_cfg: {block_size: "16", colour: red}
        seeed: 3
        """,
    )
    with pytest.raises(ConfigError) as err:
        load(path, ["policy.top_k=true"])
    errors = err.value.errors
    text = "\n".join(errors)
    assert len(errors) == 7, text
    assert f"unknown key 'seeed'; did you mean 'seed'? @ seeed (from {path})" in errors
    assert "@ policy.batch" in text and "must be > 0" in text
    assert "expected a number, got str 'fast' @ policy.optimizer.lr" in text
    assert "'float16' is not one of 'float32', 'bfloat16' @ policy.precision" in text
    assert "expected an integer, got str '16' @ policy.backend_cfg.block_size" in text
    assert "unknown key 'colour'" in text and "@ policy.backend_cfg.colour" in text
    assert "@ policy.top_k (from command line)" in text


def test_required_key_missing(tmp_path):
    path = write(tmp_path, "r.yaml", "seed: 1\n")
    with pytest.raises(ConfigError, match="required setting is missing @ policy"):
        load(path)


def test_plugin_chosen_by_name_structures_its_options(tmp_path):
    path = write(tmp_path, "r.yaml", "policy: {model_name: m, backend: fast, backend_cfg: {block_size: 32}}\n")
    assert load(path).policy.backend_cfg == EngineOptions(block_size=32)
    plain = write(tmp_path, "p.yaml", "policy: {model_name: m, backend: plain}\n")
    assert load(plain).policy.backend_cfg is None
    with pytest.raises(ConfigError) as err:
        load(path, ["policy.backend=fsat"])
    assert "unknown generation backend 'fsat'; did you mean 'fast'?" in str(err.value)
    assert "@ policy.backend" in str(err.value)


def test_round_trip_dump_then_load_is_equal(tmp_path):
    path = write(tmp_path, "r.yaml", "policy: {model_name: m, stop: [a], backend_cfg: {block_size: 4}}\ntags: [x]\n")
    run = load(path)
    again = write(tmp_path, "dumped.yaml", dump_yaml(run))
    assert load(again) == run


def test_a_string_where_a_list_is_expected_is_an_error_not_characters(tmp_path):
    path = write(tmp_path, "r.yaml", "policy: {model_name: m, stop: '</s>'}\n")
    with pytest.raises(ConfigError, match=r"expected a list, got str '</s>' @ policy.stop"):
        load(path)


def test_optional_literal_error_lists_the_choices():
    @attrs.define(kw_only=True, frozen=True)
    class WithOptionalLiteral:
        mode: Literal["a", "b"] | None = None

    with pytest.raises(ConfigError) as err:
        structure({"mode": "c"}, WithOptionalLiteral)
    assert "'c' is not one of 'a', 'b', None @ mode" in str(err.value)


def test_plain_override_of_a_plugin_option_not_in_the_file(tmp_path):
    path = write(tmp_path, "r.yaml", "policy: {model_name: m, backend: fast}\n")
    raw = apply_overrides(load_yaml(path), ["policy.backend_cfg.block_size=64"], schema=Run, lookup=lookup)
    assert structure(raw, Run, lookup=lookup).policy.backend_cfg == EngineOptions(block_size=64)
    with pytest.raises(ConfigError, match=r"\+policy.backend_cfg.blocksize"):
        apply_overrides(load_yaml(path), ["policy.backend_cfg.blocksize=64"], schema=Run, lookup=lookup)
