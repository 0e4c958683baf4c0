"""Device-resident data: batches drawn by index from tensors that stay on the trainer's device.

For datasets that fit in device memory (MNIST, Fashion-MNIST, CIFAR as ``uint8``: 47 to 150 MiB),
:class:`DeviceBatches` keeps the whole set as one tensor on the device and makes every batch with
one ``index_select``: no per-sample ``__getitem__``, no collation, no host-to-device copy per batch.
Batch order comes from an ordinary sampler (a ``RandomSampler`` by default, a
``DistributedSampler`` under ``ignite.distributed``), so
:class:`~ignite_pseudolabel.SemiSupervisedLoader`'s ``seed`` and
:class:`~ignite_pseudolabel.RNGState` resume it exactly, as they resume a ``DataLoader``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any, Callable

import torch
from torch.utils.data import RandomSampler, Sampler, SequentialSampler

from ._validation import check_int
from .batch import RawBatch
from .datasets import PseudoLabeledDataset

__all__ = ["DeviceBatches"]


class DeviceBatches:
    """Batches of tensors held on one device, drawn by index in the order of a sampler.

    Iterating yields, for every ``batch_size`` positions of the sampler's order, the rows of each
    tensor at those positions: the first tensor alone when only one is given (e.g. unlabeled
    ``uint8`` images), else a tuple (e.g. ``(images, labels)``); with ``return_index=True`` a
    one-tensor batch is a :class:`~ignite_pseudolabel.batch.RawBatch` ``(images, positions)``,
    which :class:`~ignite_pseudolabel.batch_views.BatchViews` turns into
    :class:`~ignite_pseudolabel.Views` with ``sample_index`` (FlexMatch's per-sample statistics need
    it). The positions of a pass are moved to the device once, at its start.

    It is a drop-in for a ``DataLoader`` in :class:`~ignite_pseudolabel.SemiSupervisedLoader`: it
    has ``len()``, a ``sampler`` (re-seeded by the loader's ``seed`` at every pass when it is a
    ``RandomSampler``; ``set_epoch`` is called on a ``DistributedSampler``) and a ``batch_size``.
    Use :meth:`pseudo_loader_fn` as the loader's ``loader_fn`` to draw mined pseudo-labeled batches
    from the same device tensor. Keep the images raw (``uint8``) and augment them on the device with
    ``BatchViews``, or store them already normalised.

    Args:
        tensors: tensors with the same first dimension, on the device where batches are wanted.
        batch_size: rows per batch.
        shuffle: draw positions in a random order (a ``RandomSampler`` with ``generator``); ignored
            when ``sampler`` is given.
        drop_last: leave out the last batch when it is smaller than ``batch_size``.
        sampler: the order of the positions, e.g. a ``DistributedSampler`` (default: from ``shuffle``).
        return_index: yield :class:`~ignite_pseudolabel.batch.RawBatch` (only with one tensor).
        generator: as a ``DataLoader``'s: the generator of the default ``RandomSampler``, and the one that
            gives every pass the draw a ``DataLoader`` takes for its workers' base seed (default: torch's
            global generator). ``DeviceBatches`` in place of a ``DataLoader`` with the same ``shuffle``,
            ``sampler`` and ``generator`` therefore yields the same order and leaves every generator
            where the ``DataLoader`` would.

    Examples:
        >>> images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1)
        >>> batches = DeviceBatches(images, batch_size=4, return_index=True,
        ...                         generator=torch.Generator().manual_seed(0))
        >>> [b.sample_index.tolist() for b in batches]
        [[3, 7, 5, 2], [0, 8, 1, 6], [9, 4]]
        >>> from torch.utils.data import DataLoader  # the order of a DataLoader with the same generator
        >>> [b.tolist() for b in DataLoader(range(10), batch_size=4, shuffle=True,
        ...                                 generator=torch.Generator().manual_seed(0))]
        [[3, 7, 5, 2], [0, 8, 1, 6], [9, 4]]
        >>> labeled = DeviceBatches(images, torch.arange(10) % 2, batch_size=5, shuffle=False)
        >>> [y.tolist() for _, y in labeled]
        [[0, 1, 0, 1, 0], [1, 0, 1, 0, 1]]

    .. versionadded:: 0.3.0
    """

    def __init__(
        self,
        *tensors: torch.Tensor,
        batch_size: int,
        shuffle: bool = True,
        drop_last: bool = False,
        sampler: Sampler | None = None,
        return_index: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        if not tensors:
            raise ValueError("DeviceBatches needs at least one tensor, but given none")
        for i, t in enumerate(tensors):
            if not isinstance(t, torch.Tensor) or t.ndim == 0:
                what = f"shape {tuple(t.shape)}" if isinstance(t, torch.Tensor) else type(t).__name__
                raise TypeError(f"Argument tensors[{i}] should be a tensor with a first (sample) dimension, but "
                                f"given {what}")
            if t.shape[0] != tensors[0].shape[0] or t.device != tensors[0].device:
                raise ValueError(f"Argument tensors should have the same number of rows on the same device, but "
                                 f"given {tensors[0].shape[0]} on {tensors[0].device} and {t.shape[0]} on {t.device} "
                                 f"(tensors[{i}])")
        if len(tensors[0]) == 0:
            raise ValueError("Argument tensors should hold at least one sample, but given empty tensors")
        if return_index and len(tensors) != 1:
            raise ValueError(f"Argument return_index=True needs exactly one tensor (the raw inputs), but given "
                             f"{len(tensors)}")
        if sampler is not None and not hasattr(sampler, "__iter__"):
            raise TypeError(f"Argument sampler should be a torch Sampler, but given {type(sampler).__name__}")
        self.tensors = tensors
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.drop_last = bool(drop_last)
        self.return_index = bool(return_index)
        if sampler is None:
            positions = range(len(tensors[0]))
            sampler = RandomSampler(positions, generator=generator) if shuffle else SequentialSampler(positions)
        self.sampler = sampler
        self.generator = generator

    @property
    def device(self) -> torch.device:
        """The device of the tensors (and of the batches)."""
        return self.tensors[0].device

    def __len__(self) -> int:
        n = len(self.sampler)  # type: ignore[arg-type]
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[Any]:
        # As a DataLoader's iterator: one draw (its workers' base seed) when it is created, the sampler's shuffle
        # at the first batch. Swapping a DataLoader for DeviceBatches then changes no random stream (e.g. a
        # generator shared with the labeled loader, or the global one that augmentations and dropout use).
        positions = iter(self.sampler)
        torch.empty((), dtype=torch.int64).random_(generator=self.generator)
        return self._batches(positions)

    def _batches(self, positions: Iterator[int]) -> Iterator[Any]:
        order = torch.as_tensor(list(itertools.islice(positions, len(self.sampler))),  # type: ignore[arg-type]
                                dtype=torch.int64)
        if self.device.type == "cuda":  # one asynchronous copy per pass: the host does not wait for it
            order = order.pin_memory()
        order = order.to(self.device, non_blocking=True)
        full = len(order) // self.batch_size
        for start in range(0, full * self.batch_size, self.batch_size):
            yield self._rows(order[start:start + self.batch_size])
        # The sampler's own end of pass, where a DataLoader reaches it: after the last full batch (a
        # RandomSampler takes one more, empty, permutation from its generator there).
        for _ in positions:
            pass
        if not self.drop_last and len(order) > full * self.batch_size:
            yield self._rows(order[full * self.batch_size:])

    def _rows(self, index: torch.Tensor) -> Any:
        rows = [t.index_select(0, index) for t in self.tensors]
        if self.return_index:
            return RawBatch(rows[0], index)
        return rows[0] if len(rows) == 1 else tuple(rows)

    def pseudo_loader_fn(self, batch_size: int | None = None, **kwargs: Any) -> Callable[[Any], DeviceBatches]:
        """A ``loader_fn`` for :class:`~ignite_pseudolabel.SemiSupervisedLoader` over mined pseudo-labels.

        The returned function turns the miner's :class:`~ignite_pseudolabel.PseudoLabeledDataset`
        (whose positions index this object's first tensor) into ``DeviceBatches(inputs[positions],
        pseudo_labels)`` on this device: ``(inputs, pseudo_labels)`` batches without any per-sample
        loading. Mine with a deterministic view of the same samples (e.g. the normalised images, on the
        host or on the device: the miner pins host memory only for samples on the host).

        Args:
            batch_size: rows per pseudo-labeled batch (default: this object's ``batch_size``).
            kwargs: other arguments of :class:`DeviceBatches` (``shuffle``, ``drop_last``, ``generator``).

        Examples:
            >>> from ignite_pseudolabel import PseudoLabeledDataset
            >>> images = torch.arange(6.0).view(6, 1)
            >>> pseudo = PseudoLabeledDataset(images)
            >>> pseudo.update([5, 2], [1, 0])
            >>> loader = DeviceBatches(images, batch_size=2).pseudo_loader_fn(shuffle=False)(pseudo)
            >>> [(x.view(-1).tolist(), y.tolist()) for x, y in loader]
            [([5.0, 2.0], [1, 0])]
        """
        size = self.batch_size if batch_size is None else check_int("batch_size", batch_size, minimum=1)
        inputs = self.tensors[0]

        def loader_fn(dataset: Any) -> DeviceBatches:
            if not isinstance(dataset, PseudoLabeledDataset):
                raise TypeError(f"The loader_fn of DeviceBatches expects the miner's PseudoLabeledDataset, but "
                                f"given {type(dataset).__name__}")
            if len(dataset.dataset) != len(inputs):  # type: ignore[arg-type]
                raise ValueError(f"The pseudo-labeled set indexes a dataset of {len(dataset.dataset)} samples, but "
                                 f"these tensors hold {len(inputs)}: mine the same samples")  # type: ignore[arg-type]
            positions = dataset.indices.to(inputs.device)
            return DeviceBatches(inputs.index_select(0, positions), dataset.labels.to(inputs.device),
                                 batch_size=size, **kwargs)

        return loader_fn
