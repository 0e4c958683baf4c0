"""The arguments of FixMatch's weak and strong views, checked once for every way of making them.

:func:`~ignite_pseudolabel.weak_strong_transforms` (torchvision, per image) and
:class:`~ignite_pseudolabel.batch_views.BatchViews` (batched, on the device) take the same
arguments; :meth:`ViewOptions.check` validates them without building any transform, so that the
batched path checks its arguments without importing torchvision.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from ._validation import check_choice, check_float, check_int

__all__ = ["CUTOUT_SIDES", "MAX_MAGNITUDE", "STRENGTHS", "ViewOptions"]

#: torchvision's RandAugment magnitudes are bins 0..30 of each operation's range.
MAX_MAGNITUDE = 30
#: the Cutout side of ``strength="fixmatch-torchvision"`` is drawn from this many equally spaced fractions of
#: ``cutout``.
CUTOUT_SIDES = 16
#: how the strong view samples (see :func:`~ignite_pseudolabel.weak_strong_transforms`), the default first
STRENGTHS = ("fixmatch", "fixmatch-torchvision", "torchvision")


class ViewOptions(NamedTuple):
    """The checked arguments of :func:`~ignite_pseudolabel.weak_strong_transforms` (see there for their meaning).

    Build it with :meth:`check`, which fills in the default ``magnitude`` of the ``strength`` (``None``
    for ``strength="fixmatch"``, whose ranges are fixed).

    Examples:
        >>> options = ViewOptions.check("digits", mean=(0.13,), std=(0.31,), strength="fixmatch-torchvision")
        >>> options.magnitude, options.mean, options.size
        (30, (0.13,), None)
        >>> ViewOptions.check("digits").strength, ViewOptions.check("digits").magnitude
        ('fixmatch', None)
        >>> ViewOptions.check("natural")
        Traceback (most recent call last):
        ...
        ValueError: Argument size (the image side) is required for kind='natural' (random crop)

    .. versionadded:: 0.3.0
    """

    kind: str = "natural"
    mean: Sequence[float] = (0.5,)
    std: Sequence[float] = (0.5,)
    size: int | None = None
    num_ops: int = 2
    magnitude: int | None = None
    cutout: float = 0.5
    policy: str = "randaugment"
    strength: str = "fixmatch"

    @classmethod
    def check(cls, kind: str = "natural", **options: Any) -> ViewOptions:
        """Validates the arguments (the fields, with their defaults), raising ``TypeError`` / ``ValueError`` that
        name the argument at fault."""
        kind, mean, std, size, num_ops, magnitude, cutout, policy, strength = cls(kind, **options)
        check_choice("kind", kind, ("natural", "digits"))
        check_choice("policy", policy, ("randaugment", "trivialaugment"))
        check_choice("strength", strength, STRENGTHS)
        num_ops = check_int("num_ops", num_ops, minimum=0)
        if strength == "fixmatch":
            if magnitude is not None:
                raise ValueError(f"Argument magnitude is for strength='torchvision' or 'fixmatch-torchvision' "
                                 f"(strength='fixmatch' draws from USB's fixed ranges), but given {magnitude!r}")
        else:
            if magnitude is None:
                magnitude = MAX_MAGNITUDE if strength == "fixmatch-torchvision" else 10
            magnitude = check_int("magnitude", magnitude, minimum=0)
            if magnitude > MAX_MAGNITUDE:
                raise ValueError(f"Argument magnitude should be an integer in [0, {MAX_MAGNITUDE}], but given "
                                 f"{magnitude}")
        cutout = check_float("cutout", cutout, low=0.0, high=1.0)
        if len(mean) != len(std):
            raise ValueError(f"Arguments mean and std should have the same length, but given {len(mean)} and "
                             f"{len(std)}")
        means = tuple(check_float("mean", float(m)) for m in mean)
        stds = tuple(check_float("std", float(s), low=0.0, low_inclusive=False) for s in std)
        if kind == "natural":
            if size is None:
                raise ValueError("Argument size (the image side) is required for kind='natural' (random crop)")
            size = check_int("size", size, minimum=1)
        return cls(kind, means, stds, size, num_ops, magnitude, cutout, policy, strength)
