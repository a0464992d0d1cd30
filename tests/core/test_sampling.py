"""Tests for `reinforge.core.sampling.SamplingParams`: defaults, every validator, cattrs round trip."""

from __future__ import annotations

from typing import Any

import attrs
import cattrs
import pytest

from reinforge.core.sampling import SamplingParams


def test_defaults() -> None:
    params = SamplingParams()
    assert params.temperature == 1.0
    assert params.top_p == 1.0
    assert params.top_k is None
    assert params.max_new_tokens == 512
    assert params.stop_strings == () and params.stop_token_ids == ()
    assert params.n == 1
    assert params.seed is None
    assert params.logprobs is True
    assert params.greedy is False


def test_greedy_means_temperature_zero() -> None:
    assert SamplingParams(temperature=0).greedy
    assert SamplingParams(temperature=0.0).greedy
    assert not SamplingParams(temperature=1e-6).greedy


def test_edge_values_are_accepted() -> None:
    params = SamplingParams(top_p=1, top_k=1, max_new_tokens=1, n=1, seed=-3, stop_token_ids=(0,))
    assert params.top_k == 1 and params.seed == -3


def test_frozen_and_keyword_only() -> None:
    params = SamplingParams()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        params.temperature = 0.5  # type: ignore[misc]
    with pytest.raises(TypeError):
        SamplingParams(0.5)  # type: ignore[misc]
    assert attrs.evolve(params, n=4).n == 4


def test_stop_lists_become_tuples() -> None:
    params = SamplingParams(stop_strings=["</answer>", "\n\n"], stop_token_ids=[2, 7])  # type: ignore[arg-type]
    assert params.stop_strings == ("</answer>", "\n\n")
    assert params.stop_token_ids == (2, 7)
    # a lone string is one stop string, not a tuple of characters
    assert SamplingParams(stop_strings="</answer>").stop_strings == ("</answer>",)  # type: ignore[arg-type]
    hash(params)  # frozen with tuples: usable as a dict key


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("temperature", -0.1, "temperature must be a number >= 0"),
        ("temperature", "1", "temperature must be a number >= 0"),
        ("temperature", True, "temperature must be a number >= 0"),
        ("temperature", float("nan"), "temperature must be a number >= 0"),
        ("top_p", 0, "top_p must be in \\(0, 1\\]"),
        ("top_p", 1.5, "top_p must be in \\(0, 1\\]"),
        ("top_p", -0.5, "top_p must be in \\(0, 1\\]"),
        ("top_k", -2, "top_k must be null, 0 or -1 \\(all three: off\\) or an integer >= 1"),
        ("top_k", 2.0, "top_k must be null"),
        ("max_new_tokens", 0, "max_new_tokens must be an integer >= 1, got 0"),
        ("max_new_tokens", 16.0, "max_new_tokens must be an integer >= 1"),
        ("n", 0, "n must be an integer >= 1, got 0"),
        ("n", -2, "n must be an integer >= 1"),
        ("stop_strings", ("ok", ""), "stop_strings must be a list of non-empty strings"),
        ("stop_strings", (1,), "stop_strings must be a list of non-empty strings"),
        ("stop_token_ids", (-1,), "stop_token_ids must be a list of token ids"),
        ("stop_token_ids", ("2",), "stop_token_ids must be a list of token ids"),
        ("stop_token_ids", (True,), "stop_token_ids must be a list of token ids"),
        ("seed", 1.5, "seed must be an integer or null"),
        ("logprobs", 1, "logprobs must be true or false"),
    ],
)
def test_bad_values_raise_value_error(field: str, value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SamplingParams(**{field: value})


def test_validators_work_without_an_instance() -> None:
    # the config layer calls validator(None, attribute, value) to collect every error at once
    attribute = attrs.fields(SamplingParams).top_k
    with pytest.raises(ValueError, match="top_k must be null"):
        attribute.validator(None, attribute, 0.5)
    attribute.validator(None, attribute, None)


@pytest.mark.parametrize("off", [0, -1, None])
def test_top_k_zero_and_minus_one_mean_off(off: Any) -> None:
    # 0 means "off" in HF generate, -1 in vLLM/SGLang: both are stored as the one spelling of off, None
    assert SamplingParams(top_k=off).top_k is None
    assert SamplingParams(top_k=5).top_k == 5


def test_every_field_is_documented() -> None:
    assert all(field.metadata.get("doc") for field in attrs.fields(SamplingParams))


def test_cattrs_round_trip() -> None:
    converter = cattrs.Converter(forbid_extra_keys=True)
    raw = {"temperature": 0.7, "top_k": None, "stop_strings": ["</s>"], "stop_token_ids": [3], "n": 4, "seed": 1}
    params = converter.structure(raw, SamplingParams)
    assert params == SamplingParams(temperature=0.7, stop_strings=("</s>",), stop_token_ids=(3,), n=4, seed=1)
    assert converter.structure(converter.unstructure(params), SamplingParams) == params
    with pytest.raises(cattrs.BaseValidationError):
        converter.structure({"temprature": 0.7}, SamplingParams)


@pytest.mark.parametrize("off", ["0", "-1", "null"])
def test_top_k_off_through_a_recipe_override(off: str) -> None:
    # the config layer runs a field's converter before its range check, as attrs' __init__ does
    from reinforge.core.load import load_config
    from tests.integration.grpo_helpers import REPO

    config = load_config(REPO / "examples" / "configs" / "grpo-arith-cpu.yaml", [f"policy.generation.top_k={off}"])
    assert config.policy.generation.top_k is None
    assert load_config(REPO / "examples" / "configs" / "grpo-arith-cpu.yaml", ["policy.generation.top_k=7"]).policy.generation.top_k == 7
