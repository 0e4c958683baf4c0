"""Seeded, disjoint, class-balanced labeled / validation / unlabeled splits."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from ._validation import check_int, optional_int

__all__ = ["SplitIndices", "class_balanced_split"]


class SplitIndices(NamedTuple):
    """Positions of the three parts of a split (sorted ``int64`` tensors, pairwise disjoint)."""

    labeled: torch.Tensor
    validation: torch.Tensor
    unlabeled: torch.Tensor


def class_balanced_split(
    targets: Any,
    labeled_per_class: int,
    validation_per_class: int = 0,
    *,
    seed: int = 0,
    unlabeled_per_class: int | None = None,
) -> SplitIndices:
    """Splits a labeled dataset into labeled, validation and unlabeled positions.

    Within every class the positions are shuffled with a generator seeded by ``seed``; the first
    ``labeled_per_class`` go to the labeled part, the next ``validation_per_class`` to validation and
    the rest (or the next ``unlabeled_per_class``) to the unlabeled part. The parts are disjoint and
    the labeled and validation parts hold exactly the requested number of samples of every class
    (the seed tutorial's helper indexed the whole dataset with per-class positions, so its
    "balanced" set was neither balanced nor disjoint from the unlabeled one).

    Args:
        targets: the label of every sample: a 1-D tensor, array or sequence of integers (for a
            torchvision dataset, ``dataset.targets``).
        labeled_per_class: labeled samples per class, >= 1.
        validation_per_class: validation samples per class, >= 0.
        seed: seed of the shuffle; the same seed gives the same split on every machine.
        unlabeled_per_class: cap on unlabeled samples per class (default: every remaining sample).

    Returns:
        :class:`.SplitIndices` of sorted ``int64`` position tensors.

    Raises:
        ValueError: if a class has fewer than ``labeled_per_class + validation_per_class`` samples.

    Examples:
        >>> targets = [0, 1] * 5
        >>> split = class_balanced_split(targets, labeled_per_class=1, validation_per_class=1, seed=0)
        >>> [len(part) for part in split]
        [2, 2, 6]
        >>> sorted(torch.as_tensor(targets)[split.labeled].tolist())
        [0, 1]
    """
    labeled_per_class = check_int("labeled_per_class", labeled_per_class, minimum=1)
    validation_per_class = check_int("validation_per_class", validation_per_class, minimum=0)
    unlabeled_per_class = optional_int("unlabeled_per_class", unlabeled_per_class, minimum=0)
    check_int("seed", seed)
    targets = torch.as_tensor(targets)
    if targets.ndim != 1 or targets.dtype.is_floating_point or targets.dtype == torch.bool:
        raise ValueError(f"Argument targets should be a 1-D sequence of integer labels, but given shape "
                         f"{tuple(targets.shape)} and dtype {targets.dtype}")
    generator = torch.Generator().manual_seed(seed)
    parts: tuple[list, list, list] = ([], [], [])
    needed = labeled_per_class + validation_per_class
    for cls in torch.unique(targets).tolist():
        members = torch.nonzero(targets == cls).flatten()
        if members.numel() < needed:
            raise ValueError(f"Class {cls} has {members.numel()} samples, fewer than labeled_per_class + "
                             f"validation_per_class = {needed}")
        members = members[torch.randperm(members.numel(), generator=generator)]
        rest = members[needed:] if unlabeled_per_class is None else members[needed:needed + unlabeled_per_class]
        parts[0].append(members[:labeled_per_class])
        parts[1].append(members[labeled_per_class:needed])
        parts[2].append(rest)
    return SplitIndices(*(torch.sort(torch.cat(p)).values for p in parts))
