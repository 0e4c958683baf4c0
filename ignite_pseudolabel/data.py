"""The combined labeled + unlabeled (or pseudo-labeled) stream.

An epoch follows the labeled loader; the second stream cycles independently of it, starting a new
pass (and so a new shuffle) whenever it is exhausted, and a new pass whenever the pseudo-labeled set
it reads is replaced by a new mining round. What the stream yields, and how a batch becomes the
inputs and target of one forward pass, is in ``ignite_pseudolabel.batch`` (``SemiSupervisedBatch``,
``SemiSupervisedTarget`` and ``prepare_semi_supervised_batch`` moved there in 0.3.0 and can still be
imported from here).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Callable

import torch
from torch.utils.data import DataLoader, RandomSampler

from ._validation import optional_int
from .batch import SemiSupervisedBatch, SemiSupervisedTarget, prepare_semi_supervised_batch  # noqa: F401
from .datasets import PseudoLabeledDataset
from .rng import RNGState

__all__ = ["SemiSupervisedLoader"]


def _sized_len(obj: Any) -> int | None:
    try:
        return len(obj)
    except TypeError:
        return None


class _Stream:
    """An endless iterator: a new pass when exhausted, or when the pseudo-labeled set it reads changes.

    ``source`` is an iterable of batches, or (with ``loader_fn``) a :class:`PseudoLabeledDataset` for
    which ``loader_fn`` builds a new loader after every update, so that samplers see the new size.
    """

    def __init__(self, source: Iterable, loader_fn: Callable[[Any], Iterable] | None = None,
                 seed: int | None = None) -> None:
        self.source = source
        self.loader_fn = loader_fn
        self.seed = seed
        self.iterable: Iterable | None = source if loader_fn is None else None
        self.passes = 0  # passes started so far
        self.offset = 0  # items taken in the current pass
        self._skip = 0  # items to discard at the start of the next pass (after a resume)
        self._iterator: Iterator | None = None
        self._version = self._current_version()

    def _current_version(self) -> int | None:
        return getattr(self.source, "version", None)

    def _start_pass(self) -> None:
        self._iterator = None  # let a DataLoader shut its workers down before new ones start
        self.passes += 1
        self.offset = 0
        sampler = getattr(self.iterable, "sampler", None)
        set_epoch = getattr(sampler, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(self.passes - 1)
        if self.seed is not None:
            self._seed_pass(sampler)
        # Restarting an interrupted pass (after a resume) must not draw from the global generators:
        # the checkpointed state already accounts for the draws of the iterator's creation (a
        # DataLoader's base seed) and of the batches taken (augmentations).
        saved = RNGState().state_dict() if self._skip else None
        self._iterator = iter(self.iterable)  # type: ignore[arg-type]
        for _ in range(self._skip):
            next(self._iterator)
            self.offset += 1
        if saved is not None:
            RNGState().load_state_dict(saved)
        self._skip = 0

    def _seed_pass(self, sampler: Any) -> None:
        """Makes the pass's shuffle (and the workers' base seed) a function of (seed, pass) only."""
        seed = (self.seed * 1_000_003 + self.passes) % (2**63)  # type: ignore[operator]
        if isinstance(sampler, RandomSampler):
            if sampler.generator is None:
                sampler.generator = torch.Generator()
            sampler.generator.manual_seed(seed)
            iterable: Any = self.iterable
            if hasattr(iterable, "generator"):  # a DataLoader or DeviceBatches: the pass's base-seed draw too
                iterable.generator = sampler.generator

    def next_or_none(self) -> Any:
        """The next item, or ``None`` while the pseudo-labeled set is empty."""
        version = self._current_version()
        if version != self._version:  # a new mining round: start over on the new set
            self._version = version
            self._iterator = None
            if self.loader_fn is not None:
                self.iterable = None
        if self.loader_fn is not None:
            if len(self.source) == 0:  # type: ignore[arg-type]
                return None
            if self.iterable is None:
                self.iterable = self.loader_fn(self.source)
        if self._iterator is None:
            self._start_pass()
        try:
            item = next(self._iterator)  # type: ignore[arg-type]
        except StopIteration:
            self._start_pass()
            try:
                item = next(self._iterator)  # type: ignore[arg-type]
            except StopIteration:
                return None
        self.offset += 1
        return item

    def state_dict(self) -> dict[str, Any]:
        # `stale`: the pseudo-labeled set changed since the last item, so the next item starts a new pass.
        return {"passes": self.passes, "offset": self.offset, "stale": self._current_version() != self._version}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        passes, offset = int(state["passes"]), int(state["offset"])
        complete = offset > 0 and offset == _sized_len(self.iterable)  # e.g. a labeled pass at an epoch end
        if state.get("stale", False) or passes == 0 or complete:
            self.passes, self._skip = passes, 0
        else:  # resume inside pass number `passes`: restart it (same set_epoch) and skip what was taken
            self.passes, self._skip = passes - 1, offset
        self._iterator = None
        self._version = self._current_version()


class SemiSupervisedLoader:
    """Pairs every labeled batch with an unlabeled or a pseudo-labeled batch.

    Give exactly one of ``unlabeled`` (online pseudo-labels) or ``pseudo`` (mined pseudo-labels).
    An epoch has ``len(labeled)`` batches (or ``epoch_length``); the second stream cycles on its own,
    so every unlabeled sample is seen, and starts a new pass (a new shuffle, and
    ``sampler.set_epoch(pass)`` for distributed samplers) each time it is exhausted. For mined
    pseudo-labels pass the miner's ``dataset`` (``miner.dataset``): after every mining round the
    loader builds a new pseudo-labeled loader over the new set with ``loader_fn``, and while the set
    is empty it yields labeled-only batches, so training continues with the supervised term.

    Pass it to ``trainer.run`` and pair it with :attr:`PseudoLabelLoss.prepare_batch`. Include it in
    the objects you checkpoint to resume both streams where they stopped.

    Args:
        labeled: the labeled loader, yielding ``(inputs, labels)``.
        unlabeled: the unlabeled loader, yielding inputs only.
        pseudo: a :class:`PseudoLabeledDataset` (usually ``miner.dataset``), or any iterable of
            ``(inputs, pseudo_labels)`` batches that never changes.
        loader_fn: builds the loader over the pseudo-labeled dataset after each mining round, e.g.
            ``functools.partial(DataLoader, batch_size=256, shuffle=True, num_workers=4)`` or, under
            ``ignite.distributed``, ``partial(idist.auto_dataloader, batch_size=256, shuffle=True)``.
            Default: ``DataLoader(dataset, batch_size=labeled.batch_size, shuffle=True)``.
        epoch_length: batches per epoch (default ``len(labeled)``); when it differs from
            ``len(labeled)`` the labeled loader cycles across epochs too.
        seed: makes every pass's shuffle a function of ``(seed, pass)``: the ``RandomSampler`` of each
            ``DataLoader`` (and its workers' base seed) is re-seeded at the start of each pass. With
            this and :class:`RNGState` in the checkpoint, a resumed run repeats the interrupted run
            exactly. ``DistributedSampler`` needs no seed here: its order already depends on
            ``set_epoch(pass)`` and its own ``seed``; give such loaders a ``generator`` of their own
            so that their workers' base seed does not come from the global generator.

    Examples:
        >>> import torch
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> labeled = DataLoader(TensorDataset(torch.randn(4, 2), torch.tensor([0, 1, 0, 1])), batch_size=2)
        >>> unlabeled = DataLoader(torch.randn(6, 2), batch_size=4)
        >>> loader = SemiSupervisedLoader(labeled, unlabeled=unlabeled)
        >>> len(loader), [len(b.unlabeled) for b in loader], [len(b.unlabeled) for b in loader]
        (2, [4, 2], [4, 2])

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
        ``seed``.
    """

    def __init__(
        self,
        labeled: Iterable,
        *,
        unlabeled: Iterable | None = None,
        pseudo: PseudoLabeledDataset | Iterable | None = None,
        loader_fn: Callable[[Any], Iterable] | None = None,
        epoch_length: int | None = None,
        seed: int | None = None,
    ) -> None:
        if (unlabeled is None) == (pseudo is None):
            raise ValueError("Exactly one of the arguments unlabeled (online pseudo-labels) or pseudo (mined "
                             f"pseudo-labels) should be given, but given unlabeled={type(unlabeled).__name__}, "
                             f"pseudo={type(pseudo).__name__}")
        for name, value in (("labeled", labeled), ("unlabeled", unlabeled), ("pseudo", pseudo)):
            if value is not None and not isinstance(value, (Iterable, PseudoLabeledDataset)):
                raise TypeError(f"Argument {name} should be an iterable (e.g. a DataLoader), but given "
                                f"{type(value).__name__}")
        epoch_length = optional_int("epoch_length", epoch_length, minimum=1)
        seed = optional_int("seed", seed, minimum=0)
        if epoch_length is None:
            n = _sized_len(labeled)
            if n is None:
                raise TypeError("Argument labeled has no len(); give epoch_length to set the epoch size")
            if n == 0:
                raise ValueError("Argument labeled should yield at least one batch, but given an empty loader")
        if unlabeled is not None and _sized_len(unlabeled) == 0:
            raise ValueError("Argument unlabeled should yield at least one batch, but given an empty loader")
        if loader_fn is not None and not callable(loader_fn):
            raise TypeError(f"Argument loader_fn should be callable, but given {type(loader_fn).__name__}")
        if loader_fn is not None and not isinstance(pseudo, PseudoLabeledDataset):
            raise ValueError("Argument loader_fn is only used with pseudo=<a PseudoLabeledDataset>")
        if isinstance(getattr(pseudo, "dataset", None), PseudoLabeledDataset):
            raise ValueError("Argument pseudo should be the PseudoLabeledDataset itself (pseudo=miner.dataset, with "
                             "loader_fn=...), not a loader over it: a loader built once would not follow the size "
                             "of the set as mining rounds replace it")
        if isinstance(pseudo, PseudoLabeledDataset) and loader_fn is None:
            batch_size = getattr(labeled, "batch_size", None)
            if batch_size is None:
                raise ValueError("Argument loader_fn is needed to load the pseudo-labeled dataset: the labeled loader "
                                 "has no batch_size to copy")
            loader_fn = functools.partial(DataLoader, batch_size=batch_size, shuffle=True)
        self.labeled = labeled
        self.epoch_length = epoch_length
        self.mode = "online" if unlabeled is not None else "pseudo"
        self._labeled_stream = _Stream(labeled, seed=seed)
        self._second = _Stream(unlabeled if unlabeled is not None else pseudo,  # type: ignore[arg-type]
                               loader_fn if isinstance(pseudo, PseudoLabeledDataset) else None,
                               seed=None if seed is None else seed + 1)

    def __len__(self) -> int:
        return self.epoch_length if self.epoch_length is not None else len(self.labeled)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[SemiSupervisedBatch]:
        # Both streams cycle: with the default epoch length every epoch is exactly one labeled pass, and
        # an epoch resumed mid-way (after load_state_dict) finishes the interrupted pass first.
        for _ in range(len(self)):
            labeled = self._labeled_stream.next_or_none()
            if labeled is None:
                raise RuntimeError("The labeled loader yielded no batch")
            second = self._second.next_or_none()
            if self.mode == "online":
                yield SemiSupervisedBatch(labeled, unlabeled=second)
            else:
                yield SemiSupervisedBatch(labeled, pseudo=second)

    def state_dict(self) -> dict[str, Any]:
        """Positions of both streams (passes started, batches taken), for resuming mid-stream."""
        return {"labeled": self._labeled_stream.state_dict(), "second": self._second.state_dict()}

    def load_state_dict(self, state_dict: Mapping) -> None:
        if not isinstance(state_dict, Mapping) or not {"labeled", "second"} <= set(state_dict):
            raise ValueError(f"Argument state_dict should be a dictionary with keys 'labeled' and 'second', "
                             f"but given {state_dict!r}")
        self._labeled_stream.load_state_dict(state_dict["labeled"])
        self._second.load_state_dict(state_dict["second"])
