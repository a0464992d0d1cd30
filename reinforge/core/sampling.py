"""`SamplingParams`: how a generation backend samples responses, the same for every engine.

Kept free of torch and engine imports (attrs only) so that config loading and
`reinforge plugins show` stay fast. Validators receive no instance (the config layer calls them
on single values, then reports `message @ path`), so each checks one field on its own.
"""

from __future__ import annotations

from typing import Any, Protocol

import attrs


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _temperature(_: Any, attribute: attrs.Attribute, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{attribute.name} must be a number >= 0 (0 means greedy), got {value!r}")


def _top_p(_: Any, attribute: attrs.Attribute, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ValueError(f"{attribute.name} must be in (0, 1] (1 disables nucleus sampling), got {value!r}")


def top_k_off(value: Any) -> Any:
    """0 and -1 mean "off" in every engine (HF, vLLM, SGLang); keep one spelling of off: None."""
    return None if _is_int(value) and value in (0, -1) else value


def _top_k(_: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and not (_is_int(value) and value >= 1):
        raise ValueError(f"{attribute.name} must be null, 0 or -1 (all three: off) or an integer >= 1, got {value!r}")


def _positive_int(_: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not (_is_int(value) and value >= 1):
        raise ValueError(f"{attribute.name} must be an integer >= 1, got {value!r}")


def _stop_strings(_: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, tuple) or not all(isinstance(s, str) and s for s in value):
        raise ValueError(f"{attribute.name} must be a list of non-empty strings, got {value!r}")


def _stop_token_ids(_: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, tuple) or not all(_is_int(t) and t >= 0 for t in value):
        raise ValueError(f"{attribute.name} must be a list of token ids (integers >= 0), got {value!r}")


def _seed(_: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and not _is_int(value):
        raise ValueError(f"{attribute.name} must be an integer or null, got {value!r}")


def _bool(_: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{attribute.name} must be true or false, got {value!r}")


def _as_tuple(value: Any) -> Any:
    """Lists become tuples (hashable, frozen); a lone string stays whole instead of splitting into characters."""
    if isinstance(value, str):
        return (value,)
    return tuple(value) if isinstance(value, (list, tuple)) else value


def _doc(text: str) -> dict[str, str]:
    """Field metadata read by `reinforge.core.config.describe_fields` (`reinforge plugins show`)."""
    return {"doc": text}


@attrs.define(kw_only=True, frozen=True)
class SamplingParams:
    """How to sample: temperature, nucleus / top-k filtering, length, stops, samples per prompt."""

    # Softmax temperature; the trainer divides logits by the same value so logprobs match. 0 = greedy.
    temperature: float = attrs.field(
        default=1.0, validator=_temperature, metadata=_doc("softmax temperature; 0 = greedy")
    )
    # Nucleus sampling: keep the smallest set of tokens whose probability reaches top_p. 1 = off.
    top_p: float = attrs.field(default=1.0, validator=_top_p, metadata=_doc("nucleus sampling mass in (0, 1]; 1 = off"))
    # Keep only the k most likely tokens. None (null in YAML) = off, as in NeMo-RL; 0 and -1 (the engines'
    # spellings of off) are accepted and stored as None.
    top_k: int | None = attrs.field(
        default=None, converter=top_k_off, validator=_top_k, metadata=_doc("top-k filter; null, 0 or -1 = off")
    )
    # Longest response, in tokens, not counting the prompt.
    max_new_tokens: int = attrs.field(
        default=512, validator=_positive_int, metadata=_doc("response length cap in tokens")
    )
    # Generation stops once the decoded response contains any of these; the stop string is kept.
    stop_strings: tuple[str, ...] = attrs.field(
        default=(), converter=_as_tuple, validator=_stop_strings, metadata=_doc("stop when the response contains one")
    )
    # Generation stops after any of these tokens (in addition to the tokenizer's EOS); the token is kept.
    stop_token_ids: tuple[int, ...] = attrs.field(
        default=(), converter=_as_tuple, validator=_stop_token_ids, metadata=_doc("extra stop token ids besides EOS")
    )
    # Samples per prompt (the group size G of GRPO); a prompt's samples are adjacent in the output.
    n: int = attrs.field(default=1, validator=_positive_int, metadata=_doc("samples per prompt (GRPO group size)"))
    # Seed for the sampler; None draws a fresh one, so runs differ.
    seed: int | None = attrs.field(default=None, validator=_seed, metadata=_doc("sampler seed; null = random"))
    # Return `generation_logprobs` (needed for importance ratios and the logprob-mismatch metric).
    logprobs: bool = attrs.field(default=True, validator=_bool, metadata=_doc("return generation logprobs"))

    @property
    def greedy(self) -> bool:
        """True when temperature is 0: take the argmax, ignore top_p / top_k / seed."""
        return self.temperature == 0


# The same rules at config time (GenerationConfig), so a bad value is a config error with its path
# instead of a crash when the first SamplingParams is built.
check_stop_strings = _stop_strings
check_stop_token_ids = _stop_token_ids


class SamplingDefaults(Protocol):
    """The sampling settings of a generation config (`GenerationConfig`, `reinforge eval`'s `generation:`)."""

    temperature: float
    top_p: float
    top_k: int | None
    max_new_tokens: int
    stop_strings: tuple[str, ...]
    stop_token_ids: tuple[int, ...]


def sampling_params(generation: SamplingDefaults, seed: int | None, *, temperature: float | None = None) -> SamplingParams:
    """The `SamplingParams` of one generate call from a generation config's sampling settings.

    Why one helper: training rollouts, validation and `reinforge eval` must sample under the same rules
    (the same stops, the same top-k spelling); each building its own SamplingParams let them drift.
    `temperature` overrides the config's (validation at its own temperature, e.g. `grpo.val_temperature`).
    """
    return SamplingParams(
        temperature=generation.temperature if temperature is None else temperature,
        top_p=generation.top_p,
        top_k=generation.top_k,
        max_new_tokens=generation.max_new_tokens,
        stop_strings=generation.stop_strings,
        stop_token_ids=generation.stop_token_ids,
        seed=seed,
    )
