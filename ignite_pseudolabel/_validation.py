"""Argument checks shared by the constructors (private).

Every message names the argument, what is allowed and what was given, in the style of Ignite:
``Argument threshold should be a finite number in (0, 1], but given 1.5``. The ``optional_*``
variants let ``None`` through.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from ignite.engine import Engine

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


def check_threshold(name: str, value: Any, *, allow_zero: bool = False) -> float:
    """A confidence threshold: a probability in (0, 1], or in [0, 1] with ``allow_zero`` (0 accepts
    every prediction with finite logits)."""
    return check_float(name, value, low=0.0, high=1.0, low_inclusive=allow_zero)


def optional_threshold(name: str, value: Any, *, allow_zero: bool = False) -> float | None:
    return None if value is None else check_threshold(name, value, allow_zero=allow_zero)


def check_choice(name: str, value: Any, choices: tuple) -> Any:
    if value not in choices:
        raise ValueError(f"Argument {name} should be one of {', '.join(map(repr, choices))}, but given {value!r}")
    return value


def check_identifier(name: str, value: Any) -> str:
    """A name that will become an attribute of ``engine.state``."""
    if not isinstance(value, str) or not value.isidentifier():
        raise ValueError(f"Argument {name} should be a valid Python identifier, but given {value!r}")
    return value


def check_instance(name: str, value: Any, cls: type) -> Any:
    """``value`` is an instance of ``cls``."""
    if not isinstance(value, cls):
        raise TypeError(f"Argument {name} should be a {cls.__name__}, but given {type(value).__name__}")
    return value


def check_callable(name: str, value: Any, what: str = "callable") -> Any:
    """``value`` is callable; ``what`` describes what is expected, e.g. ``"a model (callable)"``."""
    if not callable(value):
        raise TypeError(f"Argument {name} should be {what}, but given {type(value).__name__}")
    return value


def check_engine(name: str, value: Any) -> Any:
    """An ignite ``Engine``."""
    if not isinstance(value, Engine):
        raise TypeError(f"Argument {name} should be an ignite Engine, but given {type(value).__name__}")
    return value


def check_attach(owner: Any, engine: Any, attached_to: Any, *, name: str = "engine", hint: str = "") -> Any:
    """The guard of every ``attach``: ``engine`` is an ``Engine`` and ``owner`` is not attached yet.

    ``attached_to`` is the engine ``owner`` is attached to, or ``None``; ``hint`` ends the message.
    """
    check_engine(name, engine)
    if attached_to is not None:
        article = "an" if name[0] in "aeiou" else "a"
        raise ValueError(f"This {type(owner).__name__} is already attached to {article} {name}{hint}")
    return engine


def claim_state_attributes(engine: Any, names: Any, owner: str) -> None:
    """Creates ``engine.state.<name> = None`` for every name, none of which may exist yet (as Ignite's
    ``create_new``); nothing is created when one exists."""
    for attribute in names:
        if hasattr(engine.state, attribute):
            raise ValueError(f"Attribute '{attribute}' already exists in the engine.state; is another {owner} "
                             "attached to this engine?")
    for attribute in names:
        setattr(engine.state, attribute, None)


def check_map_style(name: str, value: Any) -> Any:
    """A map-style dataset: it has ``__getitem__`` and ``__len__``."""
    if not hasattr(value, "__getitem__") or not hasattr(value, "__len__"):
        raise TypeError(f"Argument {name} should be a map-style dataset with __getitem__ and __len__, but given "
                        f"{type(value).__name__}")
    return value


def check_inputs_only(owner: str, value: Any, what: str, hint: str = "") -> Any:
    """The inputs of an item (or batch) of an inputs-only dataset, which is not an ``(input, label, ...)``
    sequence.

    A one-element tuple or list (what ``TensorDataset(x)`` returns, and its batches) holds the inputs
    and is unwrapped; a longer one raises ``TypeError``. ``what`` names the value with its verb, e.g.
    ``"item 3 is"``; ``hint`` ends the message.
    """
    if isinstance(value, (tuple, list)):
        if len(value) == 1:
            return value[0]
        raise TypeError(f"{owner} expects an inputs-only dataset, but {what} a {type(value).__name__} of "
                        f"{len(value)}; wrap a labeled dataset in UnlabeledDataset{hint}")
    return value
