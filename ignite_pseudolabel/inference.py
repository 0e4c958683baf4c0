"""Predicting a whole dataset with an Ignite engine, sharded across processes: the miner's inference pass."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any, Callable

import ignite.distributed as idist
import torch
from ignite.engine import Engine, Events
from ignite.utils import convert_tensor
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from ._validation import check_inputs_only
from .batch import zero_non_finite_rows

__all__ = ["InferenceRunner", "gather_predictions", "shard_sampler"]


def shard_sampler(dataset: Dataset | torch.Tensor) -> DistributedSampler | None:
    """The sampler of a sequential loader that gives each process its shard of ``dataset``.

    Under ``ignite.distributed`` with several processes: ``DistributedSampler`` without shuffling
    (which pads the shards with repeated samples so that all have the same length); else ``None``
    (``DataLoader``'s sequential order).

    Examples:
        >>> shard_sampler(torch.zeros(5, 2)) is None  # one process
        True
    """
    if idist.get_world_size() == 1:
        return None
    return DistributedSampler(dataset, num_replicas=idist.get_world_size(), rank=idist.get_rank(),  # type: ignore
                              shuffle=False)


def gather_predictions(
    positions: torch.Tensor, labels: torch.Tensor, confidences: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The predictions of every process, once per position, sorted by position, on the CPU.

    Under ``ignite.distributed`` the (position, label, confidence) triples of all processes are
    gathered (on the device of ``labels``; the shards may differ in length); the repeats that
    ``DistributedSampler`` pads the shards with are dropped (the first occurrence is kept).

    Args:
        positions: ``(n,)`` positions in the dataset of this process's predictions.
        labels: ``(n, ...)`` their labels (or label maps).
        confidences: ``(n,)`` their confidences.

    Examples:
        >>> positions, labels, confidences = gather_predictions(
        ...     torch.tensor([2, 0, 2]), torch.tensor([5, 6, 5]), torch.tensor([0.5, 0.25, 0.5]))
        >>> positions.tolist(), labels.tolist(), confidences.tolist()
        ([0, 2], [6, 5], [0.25, 0.5])
    """
    if idist.get_world_size() > 1:
        device = labels.device
        sizes: Any = idist.all_gather(torch.tensor([positions.numel()], device=device))
        counts = [int(n) for n in sizes.tolist()]
        positions, labels, confidences = (
            torch.cat(idist.all_gather_tensors_with_shapes(t.to(device).contiguous(),
                                                           [[n, *t.shape[1:]] for n in counts]))
            for t in (positions, labels, confidences)
        )
    positions, labels, confidences = positions.cpu(), labels.cpu(), confidences.cpu()
    order = torch.argsort(positions, stable=True)
    positions, labels, confidences = positions[order], labels[order], confidences[order]
    first = torch.ones_like(positions, dtype=torch.bool)
    first[1:] = positions[1:] != positions[:-1]
    return positions[first], labels[first], confidences[first]


class InferenceRunner:
    """Predicts a dataset with its own Ignite :class:`~ignite.engine.Engine` and hands over all predictions once.

    :meth:`run` puts ``model`` in eval mode (restored afterwards) and runs ``engine`` for one epoch
    over a sequential loader. Each batch is moved to the device; inputs that hold a NaN or an
    infinity are replaced by zeros (:func:`~ignite_pseudolabel.batch.zero_non_finite_rows`) so that
    they cannot spread to the rest of their batch, and get confidence 0; the model predicts without
    gradients (under ``torch.autocast`` with ``amp_dtype``); ``encode`` turns the logits into labels
    and confidences, which are appended to lists on the device (no host synchronisation). On
    ``Events.COMPLETED``, before any handler attached to ``engine`` later, they are concatenated
    once, gathered across processes with :func:`gather_predictions` and passed to ``receive``.

    Args:
        model: the model that predicts.
        encode: ``encode(logits) -> (labels, confidences)`` for a batch's ``(N, C, ...)`` logits; it may
            check them (raising ``ValueError``).
        receive: ``receive(positions, labels, confidences)``, called with the predictions of the pass.
        device: where to run the model (default: the device of the model's first parameter).
        non_blocking: copy batches to the device asynchronously.
        amp_dtype: run the model under ``torch.autocast`` with this dtype.
        name: who runs it, in error messages.

    Attributes:
        engine: the inference engine (attach a ``ProgressBar`` or loggers to it).

    Raises:
        TypeError: if ``model`` is not a module, ``encode`` or ``receive`` not callable, or
            ``amp_dtype`` not a ``torch.dtype``.

    Examples:
        >>> seen = []
        >>> runner = InferenceRunner(torch.nn.Identity(), lambda logits: (logits.argmax(1), logits.amax(1)),
        ...                          lambda positions, labels, confidences: seen.append(labels.tolist()))
        >>> runner.run(torch.utils.data.DataLoader(torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]]), batch_size=2))
        >>> seen, runner.engine.state.iteration
        ([[0, 1, 0]], 2)

    .. versionadded:: 0.3.0
    """

    def __init__(
        self,
        model: torch.nn.Module,
        encode: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
        receive: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None],
        *,
        device: str | torch.device | None = None,
        non_blocking: bool = True,
        amp_dtype: torch.dtype | None = None,
        name: str = "InferenceRunner",
    ) -> None:
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"Argument model should be a torch.nn.Module, but given {type(model).__name__}")
        for arg, value in (("encode", encode), ("receive", receive)):
            if not callable(value):
                raise TypeError(f"Argument {arg} should be callable, but given {type(value).__name__}")
        if amp_dtype is not None and not isinstance(amp_dtype, torch.dtype):
            raise TypeError(f"Argument amp_dtype should be a torch.dtype, but given {amp_dtype!r}")
        self.model, self.encode, self.receive, self.name = model, encode, receive, name
        self.device = torch.device(device) if device is not None else None
        self.non_blocking = non_blocking
        self.amp_dtype = amp_dtype
        self.engine = Engine(self._predict_batch)
        self.engine.add_event_handler(Events.STARTED, self._start)
        self.engine.add_event_handler(Events.COMPLETED, self._complete)
        self._labels: list[torch.Tensor] = []
        self._confidences: list[torch.Tensor] = []
        self._order = torch.empty(0, dtype=torch.int64)  # positions of the samples in the loader's order
        self._seen = 0
        self._target = torch.device("cpu")

    def target_device(self) -> torch.device:
        """``device``, or the device of the model's first parameter (the CPU for a model without any)."""
        if self.device is not None:
            return self.device
        param = next(self.model.parameters(), None)
        return param.device if param is not None else torch.device("cpu")

    def run(self, loader: DataLoader) -> None:
        """Predicts every batch of ``loader`` (no shuffling: its ``sampler`` yields the samples' positions
        in order, e.g. :func:`shard_sampler` or ``DataLoader``'s sequential default)."""
        self._order = torch.as_tensor(list(loader.sampler), dtype=torch.int64)
        was_training = self.model.training
        self.model.eval()
        try:
            self.engine.run(loader, max_epochs=1)
        finally:
            self.model.train(was_training)

    def _start(self, _: Engine) -> None:
        self._labels, self._confidences, self._seen = [], [], 0
        self._target = self.target_device()

    def _predict_batch(self, _: Engine, batch: Any) -> None:
        x = convert_tensor(check_inputs_only(self.name, batch, "its batches are"), device=self._target,
                           non_blocking=self.non_blocking)
        finite = None
        if isinstance(x, torch.Tensor):
            x, finite = zero_non_finite_rows(x)  # a corrupt sample must not spread to its batch
        autocast = torch.autocast(self._target.type, dtype=self.amp_dtype) if self.amp_dtype else nullcontext()
        with torch.no_grad(), autocast:
            logits = self.model(x)
        if not isinstance(logits, torch.Tensor) or logits.ndim < 2:
            shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise ValueError(f"{self.name} expects the model to output (N, C) or (N, C, d1, ...) logits, but "
                             f"given {shape}")
        labels, confidences = self.encode(logits)
        size = x.shape[0] if isinstance(x, torch.Tensor) else logits.shape[0]
        if logits.shape[0] != size:
            raise ValueError(f"The model returned {logits.shape[0]} rows for a batch of {size} samples")
        self._seen += size
        if finite is not None:
            confidences = torch.where(finite, confidences, 0.0)  # non-finite inputs: never accepted
        self._labels.append(labels)
        self._confidences.append(confidences)

    def _complete(self, _: Engine) -> None:
        labels, confidences = torch.cat(self._labels), torch.cat(self._confidences)
        self._labels, self._confidences = [], []
        self.receive(*gather_predictions(self._order[: self._seen], labels, confidences))
