"""Turning what a trainer hands a logger into what each target accepts.

Metrics arrive as a mapping of names to numbers, but in practice a value may be a Python
int, a bool, a 0-d tensor, a numpy scalar, NaN, or now and then a string. Each target is
stricter than that (TensorBoard and MLflow take finite floats only; strict JSON has no NaN),
so the conversions live here, once, instead of in every logger.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def scalar(value: Any) -> float | None:
    """`value` as a float, or None when it is not a number (strings, lists, None, NaN and inf).

    Tensors and numpy scalars are unwrapped with `.item()`; a bool counts as 0.0 / 1.0.
    """
    if hasattr(value, "item") and callable(value.item):
        try:
            value = value.item()
        except (ValueError, RuntimeError):  # a tensor with more than one element
            return None
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        number = float(value)
        return number if math.isfinite(number) else None
    return None


def scalar_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The finite numeric metrics, as floats; everything else is left out."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        number = scalar(value)
        if number is not None:
            out[key] = number
    return out


def jsonable(value: Any) -> Any:
    """`value` in a form `json.dumps(..., allow_nan=False)` accepts.

    Non-finite floats become null (strict JSON readers such as jq reject NaN); tensors and
    arrays become numbers or lists; unknown objects become their `str`.
    """
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if hasattr(value, "tolist") and callable(value.tolist):  # tensors, numpy arrays and scalars
        return jsonable(value.tolist())
    return str(value)
