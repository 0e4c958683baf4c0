"""Argument checks shared by the constructors (private).

Every message names the argument, what is allowed and what was given, in the style of Ignite:
``Argument threshold should be a finite number in (0, 1], but given 1.5``. The ``optional_*``
variants let ``None`` through.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

__all__: list = []


def check_int(name: str, value: Any, *, minimum: int | None = None) -> int:
    """Checks that ``value`` is an integer (not a bool), at least ``minimum`` when given."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"Argument {name} should be an integer, but given {value!r} of type {type(value).__name__}")
    if minimum is not None and value < minimum:
        raise ValueError(f"Argument {name} should be an integer >= {minimum}, but given {value}")
    return int(value)


def optional_int(name: str, value: Any, *, minimum: int | None = None) -> int | None:
    return None if value is None else check_int(name, value, minimum=minimum)


def check_float(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> float:
    """Checks that ``value`` is a finite real number inside the given interval."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"Argument {name} should be a number, but given {value!r} of type {type(value).__name__}")
    value = float(value)
    lo = "(-inf" if low is None else ("[" if low_inclusive else "(") + f"{low:g}"
    hi = "inf)" if high is None else f"{high:g}" + ("]" if high_inclusive else ")")
    bad = not math.isfinite(value)
    if low is not None:
        bad = bad or (value < low if low_inclusive else value <= low)
    if high is not None:
        bad = bad or (value > high if high_inclusive else value >= high)
    if bad:
        raise ValueError(f"Argument {name} should be a finite number in {lo}, {hi}, but given {value}")
    return value


def optional_float(name: str, value: Any, **interval: Any) -> float | None:
    return None if value is None else check_float(name, value, **interval)


def check_threshold(name: str, value: Any) -> float:
    """A confidence threshold: a probability in (0, 1]."""
    return check_float(name, value, low=0.0, high=1.0, low_inclusive=False)


def optional_threshold(name: str, value: Any) -> float | None:
    return None if value is None else check_threshold(name, value)


def check_choice(name: str, value: Any, choices: tuple) -> Any:
    if value not in choices:
        raise ValueError(f"Argument {name} should be one of {', '.join(map(repr, choices))}, but given {value!r}")
    return value


def check_identifier(name: str, value: Any) -> str:
    """A name that will become an attribute of ``engine.state``."""
    if not isinstance(value, str) or not value.isidentifier():
        raise ValueError(f"Argument {name} should be a valid Python identifier, but given {value!r}")
    return value
