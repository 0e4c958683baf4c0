"""Mined pseudo-labels: predict an unlabeled dataset, keep the confident predictions."""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Mapping
from contextlib import nullcontext
from typing import Any, ClassVar

import ignite.distributed as idist
import torch
from ignite.base import Serializable
from ignite.engine import CallableEventWithFilter, Engine, Events, EventsList
from ignite.utils import convert_tensor
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from ._stats import confident_labels
from ._validation import (
    check_attach,
    check_inputs_only,
    check_int,
    check_map_style,
    claim_state_attributes,
    optional_float,
    optional_int,
    optional_threshold,
)
from .batch import zero_non_finite_rows
from .datasets import PseudoLabeledDataset
from .label_maps import encode_label_maps
from .selection import select_pseudo_labels

__all__ = ["PseudoLabelMiner", "select_pseudo_labels"]


def _on_host(sample: Any) -> bool:
    """False when a sample (a tensor, or a tuple/list whose first element is one) lives on a device."""
    first = sample[0] if isinstance(sample, (tuple, list)) and sample else sample
    return not isinstance(first, torch.Tensor) or first.device.type == "cpu"


class PseudoLabelMiner(Serializable):
    """Mines pseudo-labels: predicts an unlabeled dataset and keeps the confident predictions.

    On the trainer's event of your choice (``Events.STARTED`` by default: once, when the miner has
    not mined yet, so not again after a resume that restored its state nor on a second
    ``trainer.run``; or e.g. ``Events.EPOCH_COMPLETED(every=5)`` for iterative self-training) the
    miner runs its own inference :class:`~ignite.engine.Engine` (:attr:`engine`, to which a
    ``ProgressBar`` or loggers can be attached) over ``dataset`` with ``model`` in eval mode and
    without gradients, then selects pseudo-labels with :func:`.select_pseudo_labels`: every sample
    whose max softmax probability is >= ``threshold``, optionally only the most confident
    ``class_fraction`` of each class, at most ``max_per_class`` per class and ``k_best`` overall. Per
    batch it only appends the labels and confidences to lists on the device (no host
    synchronisation; the positions follow from the sequential loader's order); they are
    concatenated once at the end. Predictions with a non-finite logit are
    never accepted, nor are samples whose inputs hold a NaN or an infinity: these are replaced by
    zeros before the forward pass (:func:`~ignite_pseudolabel.batch.zero_non_finite_rows`), so that
    they cannot spread to the rest of their batch, and get confidence 0.

    **Dense predictions** (a segmentation model's ``(N, C, d1, ...)`` logits) give per-pixel
    pseudo-labels: ``threshold`` applies to every pixel, and each sample's label map is stored in the
    compact encoding of :func:`~ignite_pseudolabel.label_maps.encode_label_maps` (``uint8``, the
    unconfident pixels set to ``ignore_index``; 48 x 48 maps of 5,000 images take 11 MB). A sample is
    accepted when at least one of its pixels is; its confidence is the mean confidence of its
    pixels (``k_best`` keeps the most confident samples; ``max_per_class`` and ``class_fraction`` do
    not apply). :attr:`labels` then holds the maps, :attr:`dataset` yields ``(input, label_map)``
    pairs (decode them with :class:`~ignite_pseudolabel.dense.DensePrepareBatch`),
    :attr:`class_counts` counts pixels and :attr:`accuracy` is per pixel against ``true_labels``
    maps. ``train_dataset`` must then keep the pixels where they are (photometric transforms only):
    the maps are not moved with the images.

    Under ``ignite.distributed`` every rank predicts its shard of ``dataset``; at the end of the round
    the (position, label, confidence) triples of all ranks are gathered, the repeats that
    ``DistributedSampler`` pads the shards with are dropped, and every rank selects from the same
    predictions, so all ranks hold the identical pseudo-labeled set. Call the miner on every rank.

    By default every round replaces the pseudo-labeled set. With ``grow=True`` the set grows as in
    scikit-learn's ``SelfTrainingClassifier``: an accepted sample keeps the label it was accepted
    with, each round selects among the samples not accepted yet, and :attr:`accepted_round` records
    the round in which each sample was accepted. After ``max_rounds`` rounds the miner stops mining.

    The result is the content of :attr:`dataset`, a :class:`PseudoLabeledDataset` view that
    indexes ``train_dataset`` (by default ``dataset`` itself), so that dataset's transforms (for
    example training augmentation) apply to pseudo-labeled samples. Pass it to
    ``SemiSupervisedLoader(labeled, pseudo=miner.dataset, loader_fn=...)``, which builds a new loader
    over it after every mining round.

    Args:
        model: the model that predicts: the one being trained, a frozen pretrained model, or an EMA
            copy (``EMAHandler(model).ema_model``). Its train/eval mode is restored afterwards.
        dataset: the unlabeled dataset to predict, returning inputs only (wrap a labeled dataset in
            :class:`UnlabeledDataset`), e.g. a tensor or ``TensorDataset(x)`` (whose one-element
            items hold the inputs). Use deterministic (evaluation) transforms here.
        threshold: minimum confidence, in [0, 1] (the seed tutorial used 0.99; 0 accepts every
            prediction with finite inputs and logits), or ``None`` when another criterion selects.
        num_classes: expected number of classes; checked against the model's outputs (default: taken
            from them).
        max_per_class: keep at most this many pseudo-labels per class (per round), the most confident.
        k_best: keep at most this many pseudo-labels per round, the most confident.
        class_fraction: keep at most this fraction of each class's predictions (per-class
            percentile thresholds), in (0, 1].
        grow: accumulate accepted samples over rounds instead of replacing them.
        max_rounds: stop mining on trainer events after this many rounds (default: no limit); an
            explicit :meth:`run` always mines.
        train_dataset: the dataset :attr:`dataset` indexes into: the same samples in the same order,
            typically with training transforms (default: ``dataset``).
        batch_size: inference batch size.
        num_workers: ``DataLoader`` workers for inference.
        device: where to run the model (default: the device of the model's first parameter).
        non_blocking: copy batches to the device asynchronously (the loader pins memory on CUDA), so
            that the host does not wait for each copy.
        amp_dtype: run inference under ``torch.autocast`` with this dtype (e.g. ``torch.bfloat16``).
        true_labels: the held-back true label of every sample of ``dataset`` (benchmarks have them):
            enables :attr:`accuracy`. Never used for selection. ``(N, d1, ...)`` label maps for dense
            predictions (pixels whose value is not a class are not counted).
        ignore_index: the value of unconfident pixels in the label maps of dense predictions; not a
            class.

    Attributes:
        dataset: the :class:`PseudoLabeledDataset` with the accepted samples.
        engine: the inference engine.
        indices, labels, confidences: positions (into ``dataset``), pseudo-labels and confidences of
            the accepted samples (CPU tensors).
        all_confidences: max softmax probability of every sample of the last round (0 for
            non-finite inputs or predictions), e.g. for a histogram.
        num_non_finite: samples of the last round with non-finite inputs or logits (never accepted).
        class_counts: accepted samples per class.
        accuracy: fraction of correct pseudo-labels (``None`` without ``true_labels`` or when nothing
            was accepted).
        rounds: mining rounds run so far.
        accepted_round: for every sample of ``dataset``, the round (from 1) in which its current
            pseudo-label was accepted, -1 if it has none.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> _ = torch.manual_seed(0)
        >>> model = nn.Linear(2, 2)
        >>> with torch.no_grad():
        ...     _ = model.weight.copy_(torch.tensor([[8.0, 0.0], [-8.0, 0.0]])), model.bias.zero_()
        >>> unlabeled = torch.tensor([[1.0, 0.0], [0.01, 0.0], [-1.0, 0.0]])
        >>> miner = PseudoLabelMiner(model, unlabeled, threshold=0.99)
        >>> pseudo = miner.run()
        >>> miner.indices.tolist(), miner.labels.tolist(), len(pseudo)
        ([0, 2], [0, 1], 2)

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
        ``k_best``, ``class_fraction``, ``grow``, ``max_rounds``, ``accepted_round``; sharded under
        ``ignite.distributed``.
    .. versionchanged:: 0.3.0
        ``threshold=0``; ``TensorDataset(x)`` datasets; dense predictions (label maps,
        ``ignore_index``); samples with non-finite inputs are zeroed before the forward pass and
        never accepted.
    """

    _state_dict_all_req_keys = ("indices", "labels", "confidences", "rounds", "accepted_round", "dataset_size")
    #: The attributes that :meth:`attach` publishes on the trainer's ``engine.state``.
    state_attributes: ClassVar[tuple[str, ...]] = ("num_pseudo_labels", "pseudo_label_accuracy")
    #: configuration that a checkpoint must match to be loaded
    _config_keys = ("threshold", "max_per_class", "k_best", "class_fraction", "grow", "dataset_size")

    def __init__(
        self,
        model: torch.nn.Module,
        dataset: Dataset | torch.Tensor,
        threshold: float | None = 0.99,
        *,
        num_classes: int | None = None,
        max_per_class: int | None = None,
        k_best: int | None = None,
        class_fraction: float | None = None,
        grow: bool = False,
        max_rounds: int | None = None,
        train_dataset: Dataset | None = None,
        batch_size: int = 256,
        num_workers: int = 0,
        device: str | torch.device | None = None,
        non_blocking: bool = True,
        amp_dtype: torch.dtype | None = None,
        true_labels: torch.Tensor | None = None,
        ignore_index: int = 255,
    ) -> None:
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"Argument model should be a torch.nn.Module, but given {type(model).__name__}")
        check_map_style("dataset", dataset)
        if len(dataset) == 0:  # type: ignore[arg-type]
            raise ValueError("Argument dataset should hold at least one sample, but given an empty dataset")
        self.threshold = optional_threshold("threshold", threshold, allow_zero=True)
        self.num_classes = optional_int("num_classes", num_classes, minimum=2)
        self.max_per_class = optional_int("max_per_class", max_per_class, minimum=1)
        self.k_best = optional_int("k_best", k_best, minimum=1)
        self.class_fraction = optional_float("class_fraction", class_fraction, low=0.0, high=1.0,
                                             low_inclusive=False)
        if self.threshold is None and self.k_best is None and self.class_fraction is None:
            raise ValueError("At least one of the arguments threshold, k_best or class_fraction should be given, "
                             "but all are None")
        self.grow = bool(grow)
        self.max_rounds = optional_int("max_rounds", max_rounds, minimum=1)
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.num_workers = check_int("num_workers", num_workers, minimum=0)
        if amp_dtype is not None and not isinstance(amp_dtype, torch.dtype):
            raise TypeError(f"Argument amp_dtype should be a torch.dtype, but given {amp_dtype!r}")
        view_of: Any = dataset if train_dataset is None else train_dataset
        if len(view_of) != len(dataset):  # type: ignore[arg-type]
            raise ValueError(f"Argument train_dataset should have the same samples as dataset ({len(dataset)}), but "
                             f"given {len(view_of)} samples")  # type: ignore[arg-type]
        if true_labels is not None:
            true_labels = torch.as_tensor(true_labels)
            if true_labels.shape[:1] != (len(dataset),):  # type: ignore[arg-type]
                raise ValueError(f"Argument true_labels should have shape ({len(dataset)},), one label per sample "
                                 f"of dataset (or ({len(dataset)}, d1, ...) label maps), but given "
                                 f"{tuple(true_labels.shape)}")
        self.model = model
        self.source: Any = dataset
        self.device = torch.device(device) if device is not None else None
        self.non_blocking = non_blocking
        self.amp_dtype = amp_dtype
        self.true_labels = true_labels
        self.ignore_index = check_int("ignore_index", ignore_index, minimum=0)
        self.dataset = PseudoLabeledDataset(view_of)
        self.engine = Engine(self._predict_batch)
        self.engine.add_event_handler(Events.STARTED, self._reset_buffers)
        self.engine.add_event_handler(Events.COMPLETED, self._select)
        self.indices = torch.empty(0, dtype=torch.int64)
        self.labels = torch.empty(0, dtype=torch.int64)
        self.confidences = torch.empty(0)
        self.all_confidences = torch.empty(0)
        self.num_non_finite = 0
        self.rounds = 0
        self.accepted_round = torch.full((len(dataset),), -1, dtype=torch.int64)  # type: ignore[arg-type]
        self._buffers: tuple[list, list] = ([], [])  # per-batch labels and confidences, on the device
        self._order = torch.empty(0, dtype=torch.int64)  # positions of the samples in the loader's order
        self._seen = 0
        self._trainer: Engine | None = None
        self._warned_empty = False

    # ----------------------------------------------------------------------------------------- results
    @property
    def class_counts(self) -> torch.Tensor:
        """Accepted pseudo-labels per class (``int64``, one entry per class; pixels, for label maps)."""
        if self.labels.ndim > 1:
            return torch.bincount(self.labels[self.labels != self.ignore_index].long(), minlength=self.num_classes or 0)
        return torch.bincount(self.labels, minlength=self.num_classes or 0)

    @property
    def accuracy(self) -> float | None:
        """Fraction of accepted pseudo-labels equal to the held-back true labels, when those were given."""
        if self.true_labels is None or self.indices.numel() == 0:
            return None
        truth = self.true_labels[self.indices]
        if self.labels.ndim > 1:  # label maps: over the labelled pixels whose true label is a class
            used = (self.labels != self.ignore_index) & (truth >= 0) & (truth < (self.num_classes or 0))
            return float(((self.labels.long() == truth) & used).sum() / used.sum().clamp(min=1))
        return float((self.labels == truth).float().mean())

    # ------------------------------------------------------------------------------------------ running
    def attach(
        self,
        engine: Engine,
        event: Events | CallableEventWithFilter | EventsList = Events.STARTED,
    ) -> None:
        """Mines on ``event`` of ``engine`` (the trainer) and publishes the result on its state.

        After each round ``engine.state.num_pseudo_labels`` and ``engine.state.pseudo_label_accuracy``
        are set. On ``Events.STARTED`` the miner only mines if it has not mined yet, so a run resumed
        with this miner's state keeps the pseudo-labeled set it had.

        Raises:
            TypeError: if ``engine`` is not an ``Engine``.
            ValueError: if the miner is already attached or the state attributes exist.
        """
        check_attach(self, engine, self._trainer)
        claim_state_attributes(engine, self.state_attributes, "PseudoLabelMiner")
        events = list(event) if isinstance(event, EventsList) else [event]
        self._trainer = engine
        self._publish()
        for e in events:
            if e == Events.STARTED:
                engine.add_event_handler(e, self._mine_once)
            else:
                engine.add_event_handler(e, self)

    def _mine_once(self, engine: Engine) -> None:
        if self.rounds == 0:
            self(engine)

    def __call__(self, engine: Engine | None = None) -> None:
        """Runs a mining round, unless ``max_rounds`` rounds have already run."""
        if self.max_rounds is None or self.rounds < self.max_rounds:
            self.run()

    def run(self) -> PseudoLabeledDataset:
        """Runs one mining round now and returns :attr:`dataset` with the new pseudo-labeled set."""
        was_training = self.model.training
        self.model.eval()
        try:
            self.engine.run(self._make_loader(), max_epochs=1)
        finally:
            self.model.train(was_training)
        return self.dataset

    def _make_loader(self) -> DataLoader:
        """A sequential loader over the dataset; under ``ignite.distributed`` each rank reads its shard
        (``DistributedSampler`` without shuffling, which pads with repeated samples). The positions of
        the samples, in the loader's order, are computed once here rather than carried by every item."""
        device = self._device()
        sampler: DistributedSampler | None = None
        if idist.get_world_size() > 1:
            sampler = DistributedSampler(self.source, num_replicas=idist.get_world_size(), rank=idist.get_rank(),
                                         shuffle=False)
            self._order = torch.tensor(list(sampler), dtype=torch.int64)
        else:
            self._order = torch.arange(len(self.source), dtype=torch.int64)
        # Pinned host memory makes the copies asynchronous; samples already on a device cannot be pinned.
        pin = device.type == "cuda" and len(self.source) > 0 and _on_host(self.source[0])
        return DataLoader(self.source, batch_size=self.batch_size, shuffle=False, sampler=sampler,
                          num_workers=self.num_workers, pin_memory=pin)

    def _device(self) -> torch.device:
        if self.device is not None:
            return self.device
        param = next(self.model.parameters(), None)
        return param.device if param is not None else torch.device("cpu")

    def _reset_buffers(self, _: Engine) -> None:
        self._buffers = ([], [])
        self._seen = 0

    def _predict_batch(self, engine: Engine, batch: Any) -> None:
        x = check_inputs_only("PseudoLabelMiner", batch, "its batches are")
        device = self._device()
        x = convert_tensor(x, device=device, non_blocking=self.non_blocking)
        finite = None
        if isinstance(x, torch.Tensor):
            x, finite = zero_non_finite_rows(x)  # a corrupt sample must not spread to its batch
        autocast = torch.autocast(device.type, dtype=self.amp_dtype) if self.amp_dtype else nullcontext()
        with torch.no_grad(), autocast:
            logits = self.model(x)
        if not isinstance(logits, torch.Tensor) or logits.ndim < 2:
            shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise ValueError(f"PseudoLabelMiner expects the model to output (N, C) or (N, C, d1, ...) logits, but "
                             f"given {shape}")
        if logits.ndim > 2 and (self.max_per_class is not None or self.class_fraction is not None):
            raise ValueError("PseudoLabelMiner: max_per_class and class_fraction select whole samples by class; "
                             "they do not apply to dense (per-pixel) predictions")
        if self.num_classes is not None and logits.shape[1] != self.num_classes:
            raise ValueError(f"The model outputs {logits.shape[1]} classes, but num_classes={self.num_classes}")
        size = x.shape[0] if isinstance(x, torch.Tensor) else logits.shape[0]
        if logits.shape[0] != size:
            raise ValueError(f"The model returned {logits.shape[0]} rows for a batch of {size} samples")
        self._seen += size
        if logits.ndim > 2:  # per-pixel label maps, unconfident pixels ignore_index; confidence per image
            label, confidence = encode_label_maps(logits, self.threshold, self.ignore_index)
        else:
            confidence, label, _ = confident_labels(logits)  # confidence 0: a non-finite prediction
        if finite is not None:
            confidence = torch.where(finite, confidence, 0.0)  # ... or non-finite inputs: never accepted
        self._buffers[0].append(label)
        self._buffers[1].append(confidence)
        if self.num_classes is None:
            self.num_classes = int(logits.shape[1])

    def _gather(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """All predictions of this round, from every rank, once per position, sorted by position (CPU)."""
        device = self._device()
        positions = self._order[: self._seen].to(device)  # the sequential loader's order
        labels = torch.cat(self._buffers[0])
        confidences = torch.cat(self._buffers[1])
        self._buffers = ([], [])
        if idist.get_world_size() > 1:
            # Shards may differ in size: gather with explicit shapes (plain all_gather needs equal ones).
            sizes: Any = idist.all_gather(torch.tensor([positions.numel()], device=device))
            counts = [int(n) for n in sizes.tolist()]
            positions, labels, confidences = (
                torch.cat(idist.all_gather_tensors_with_shapes(t.contiguous(), [[n, *t.shape[1:]] for n in counts]))
                for t in (positions, labels.to(device), confidences.to(device))
            )
        positions, labels, confidences = positions.cpu(), labels.cpu(), confidences.cpu()
        # Sort by position and drop the repeats that DistributedSampler pads the shards with.
        order = torch.argsort(positions, stable=True)
        positions, labels, confidences = positions[order], labels[order], confidences[order]
        first = torch.ones_like(positions, dtype=torch.bool)
        first[1:] = positions[1:] != positions[:-1]
        return positions[first], labels[first], confidences[first]

    def _select(self, _: Engine) -> None:
        positions, labels, confidences = self._gather()
        self.num_non_finite = int((confidences == 0).sum())
        candidates = self.accepted_round[positions] < 0 if self.grow else None
        if labels.ndim > 1:  # label maps (thresholded per pixel): images with a labelled pixel, ranked for k_best
            labelled = (labels != self.ignore_index).flatten(1).any(1)
            keep = select_pseudo_labels(confidences, torch.zeros_like(positions), k_best=self.k_best,
                                        candidates=labelled if candidates is None else labelled & candidates)
        else:
            keep = select_pseudo_labels(confidences, labels, self.threshold, max_per_class=self.max_per_class,
                                        k_best=self.k_best, class_fraction=self.class_fraction,
                                        candidates=candidates)
        self.rounds += 1
        new = positions[keep]
        if self.grow:
            indices = torch.cat([self.indices, new])
            order = torch.argsort(indices)
            self._set_result(indices[order], torch.cat([self.labels, labels[keep]])[order],
                             torch.cat([self.confidences, confidences[keep]])[order])
        else:
            self.accepted_round.fill_(-1)
            self._set_result(new, labels[keep], confidences[keep])
        self.accepted_round[new] = self.rounds
        self.all_confidences = confidences
        if self.num_non_finite:
            warnings.warn(f"PseudoLabelMiner: {self.num_non_finite} of {positions.numel()} samples had "
                          "non-finite inputs or logits and were not accepted", RuntimeWarning, stacklevel=2)
        if new.numel() == 0 and not self._warned_empty:
            self._warned_empty = True
            what = "no new sample" if self.grow else "no sample"
            warnings.warn(f"PseudoLabelMiner accepted {what} in round {self.rounds} (threshold {self.threshold}, "
                          f"highest confidence {float(confidences.max()):.4f}); training continues with "
                          f"{len(self.dataset)} pseudo-labels", RuntimeWarning, stacklevel=2)
        self._publish()

    def _set_result(self, indices: torch.Tensor, labels: torch.Tensor, confidences: torch.Tensor) -> None:
        self.indices, self.labels, self.confidences = indices, labels, confidences
        self.dataset.update(indices, labels)

    def _publish(self) -> None:
        if self._trainer is not None:
            values = (int(self.indices.numel()), self.accuracy)
            for name, value in zip(self.state_attributes, values):
                setattr(self._trainer.state, name, value)

    # ---------------------------------------------------------------------------------------- state
    def state_dict(self) -> OrderedDict:
        """The accepted set and the configuration it was mined with (tensors and plain Python only)."""
        config = {name: getattr(self, name) for name in self._config_keys if name != "dataset_size"}
        return OrderedDict(
            indices=self.indices.clone(),
            labels=self.labels.clone(),
            confidences=self.confidences.clone(),
            accepted_round=self.accepted_round.clone(),
            rounds=self.rounds,
            num_classes=self.num_classes,
            dataset_size=len(self.source),  # type: ignore[arg-type]
            **config,
        )

    def load_state_dict(self, state_dict: Mapping) -> None:
        """Restores the pseudo-labeled set.

        Raises:
            ValueError: if the state was saved for a dataset of another size, with other selection
                criteria, growth mode or number of classes.
        """
        super().load_state_dict(state_dict)
        expected = {name: getattr(self, name) for name in self._config_keys if name != "dataset_size"}
        expected["dataset_size"] = len(self.source)  # type: ignore[arg-type]
        if self.num_classes is not None:
            expected["num_classes"] = self.num_classes
        for name, value in expected.items():
            if name in state_dict and state_dict[name] != value:
                raise ValueError(f"Cannot load a PseudoLabelMiner state saved with {name}={state_dict[name]!r} into "
                                 f"a miner with {name}={value!r}: the checkpoint comes from another configuration")
        if state_dict.get("num_classes") is not None:
            self.num_classes = int(state_dict["num_classes"])
        self._set_result(torch.as_tensor(state_dict["indices"]), torch.as_tensor(state_dict["labels"]),
                         torch.as_tensor(state_dict["confidences"]))
        self.accepted_round = torch.as_tensor(state_dict["accepted_round"]).clone()
        self.rounds = int(state_dict["rounds"])
        self._publish()


# Kept for code that imported it (0.2); the names live on the class now.
STATE_ATTRIBUTES = PseudoLabelMiner.state_attributes
