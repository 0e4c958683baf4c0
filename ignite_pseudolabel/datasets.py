"""Dataset views: unlabeled inputs, and pseudo-labeled samples indexed into an unlabeled dataset.

Both are views: they hold indices (and pseudo-labels), never copies of the samples, so the wrapped
dataset's own loading and transforms apply to every sample they return.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from ._validation import check_inputs_only, check_map_style

__all__ = ["PseudoLabeledDataset", "UnlabeledDataset"]


def _as_index_tensor(name: str, indices: Any, size: int | None = None) -> torch.Tensor:
    t = torch.as_tensor(indices)
    if t.ndim != 1 or (t.numel() > 0 and (t.dtype.is_floating_point or t.dtype == torch.bool)):
        raise ValueError(f"Argument {name} should be a 1-D sequence of integer indices, but given shape "
                         f"{tuple(t.shape)} and dtype {t.dtype}")
    t = t.to(torch.int64)
    if size is not None and t.numel() > 0 and (int(t.min()) < 0 or int(t.max()) >= size):
        raise ValueError(f"Argument {name} should hold indices in [0, {size}), but given values in "
                         f"[{int(t.min())}, {int(t.max())}]")
    return t


class UnlabeledDataset(Dataset):
    """A view of a labeled dataset that returns only the inputs.

    Use it to turn the unlabeled part of a labeled dataset (for example a torchvision dataset split
    with :func:`~ignite_pseudolabel.class_balanced_split`) into the inputs-only dataset that the
    unlabeled stream and :class:`~ignite_pseudolabel.PseudoLabelMiner` expect. The labels stay
    available for measuring pseudo-label accuracy through :meth:`held_back_targets`, never for
    training.

    Args:
        dataset: a map-style dataset whose items are ``(input, label, ...)`` sequences.
        indices: the positions of ``dataset`` to expose (default: all of them).

    Examples:
        >>> import torch
        >>> from torch.utils.data import TensorDataset
        >>> full = TensorDataset(torch.arange(5.0), torch.tensor([0, 1, 0, 1, 0]))
        >>> unlabeled = UnlabeledDataset(full, indices=[1, 3, 4])
        >>> len(unlabeled), unlabeled[0]
        (3, tensor(1.))
        >>> unlabeled.held_back_targets()
        tensor([1, 1, 0])

    .. versionadded:: 0.1.0
    """

    def __init__(self, dataset: Dataset, indices: Sequence[int] | torch.Tensor | None = None) -> None:
        check_map_style("dataset", dataset)
        self.dataset = dataset
        n = len(dataset)  # type: ignore[arg-type]
        self.indices = torch.arange(n) if indices is None else _as_index_tensor("indices", indices, n)

    def __len__(self) -> int:
        return int(self.indices.numel())

    def __getitem__(self, i: int) -> Any:
        item = self.dataset[int(self.indices[i])]
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise TypeError(f"UnlabeledDataset expects the wrapped dataset to return (input, label, ...) "
                            f"sequences, but item {int(self.indices[i])} is a {type(item).__name__}; "
                            "an inputs-only dataset can be used as the unlabeled dataset directly")
        return item[0]

    def held_back_targets(self) -> torch.Tensor:
        """The true labels of the exposed samples, for measuring pseudo-label accuracy.

        Read from the wrapped dataset's ``targets`` attribute when it has one (torchvision datasets
        do), without loading any input; otherwise from the items themselves.
        """
        targets = getattr(self.dataset, "targets", None)
        if targets is not None:
            return torch.as_tensor(targets)[self.indices]
        return torch.as_tensor([int(self.dataset[int(i)][1]) for i in self.indices])


class PseudoLabeledDataset(Dataset):
    """Pseudo-labeled samples as ``(input, pseudo_label)`` pairs, indexed into an inputs-only dataset.

    :class:`~ignite_pseudolabel.PseudoLabelMiner` keeps one of these up to date with :meth:`update`;
    each update increments ``version``, which tells
    :class:`~ignite_pseudolabel.SemiSupervisedLoader` to restart its pseudo stream over the new set.

    Args:
        dataset: the inputs-only dataset the indices point into (its transforms apply); items that
            are one-element tuples or lists, as ``TensorDataset(x)`` returns, are unwrapped.
        indices: positions in ``dataset`` (default: none).
        labels: the pseudo-label of each position (default: none), or a label map per position
            ``(K, d1, ...)`` for dense predictions (items are then ``(input, label_map)``).

    Examples:
        >>> import torch
        >>> images = torch.arange(6.0)
        >>> pseudo = PseudoLabeledDataset(images, indices=[4, 1], labels=[2, 0])
        >>> len(pseudo), pseudo[0]
        (2, (tensor(4.), 2))
        >>> pseudo.update(torch.tensor([5]), torch.tensor([1]))
        >>> len(pseudo), pseudo[0], pseudo.version
        (1, (tensor(5.), 1), 2)

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.3.0
        Accepts ``TensorDataset(x)``; label maps.
    """

    def __init__(
        self,
        dataset: Dataset | torch.Tensor,
        indices: Sequence[int] | torch.Tensor | None = None,
        labels: Sequence[int] | torch.Tensor | None = None,
    ) -> None:
        check_map_style("dataset", dataset)
        self.dataset = dataset
        self.version = 0
        self.indices = torch.empty(0, dtype=torch.int64)
        self.labels = torch.empty(0, dtype=torch.int64)
        self.update(torch.empty(0) if indices is None else indices, torch.empty(0) if labels is None else labels)

    def update(self, indices: Sequence[int] | torch.Tensor, labels: Sequence[int] | torch.Tensor) -> None:
        """Replaces the pseudo-labeled set and increments ``version``.

        Raises:
            ValueError: if ``indices`` and ``labels`` differ in length, or an index is out of range.
        """
        idx = _as_index_tensor("indices", indices, len(self.dataset))  # type: ignore[arg-type]
        lab = torch.as_tensor(labels)
        if lab.ndim > 1:  # label maps of dense pseudo-labels, kept in their compact dtype (e.g. uint8)
            if lab.dtype.is_floating_point or lab.dtype == torch.bool:
                raise ValueError(f"Argument labels should hold integer label maps, but given dtype {lab.dtype}")
        else:
            lab = _as_index_tensor("labels", labels)
        if idx.numel() != lab.shape[0]:
            raise ValueError(f"Arguments indices and labels should have the same length, but given "
                             f"{idx.numel()} and {lab.shape[0]}")
        self.indices, self.labels = idx, lab
        self.version += 1

    def __len__(self) -> int:
        return int(self.indices.numel())

    def __getitem__(self, i: int) -> tuple[Any, int]:
        position = int(self.indices[i])
        item = check_inputs_only("PseudoLabeledDataset", self.dataset[position], f"item {position} is",
                                 " so its true labels are never used as pseudo-labels")
        label = self.labels[i]
        return item, int(label) if label.ndim == 0 else label
