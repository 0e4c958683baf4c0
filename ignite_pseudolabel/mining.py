"""Mined pseudo-labels: predict an unlabeled dataset, keep the confident predictions.

:class:`PseudoLabelMiner` composes the parts that live in their own modules: the inference pass
(:class:`~ignite_pseudolabel.inference.InferenceRunner`), the selection
(:class:`~ignite_pseudolabel.selection.AutoSelection`: whole samples or label maps), the rounds and
their state (:class:`~ignite_pseudolabel.rounds.MiningRounds`) and the publishing on the trainer's
state (:class:`~ignite_pseudolabel.engine_state.StatePublisher`).
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from ignite.base import Serializable
from ignite.engine import CallableEventWithFilter, Engine, Events, EventsList
from torch.utils.data import DataLoader, Dataset

from ._validation import check_attach, check_int, check_map_style
from .datasets import PseudoLabeledDataset
from .engine_state import StatePublisher
from .inference import InferenceRunner, shard_sampler
from .rounds import MiningRounds
from .selection import AutoSelection, ClassSelection, select_pseudo_labels

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
    miner runs its own inference :class:`~ignite.engine.Engine` (``engine``, to which a
    ``ProgressBar`` or loggers can be attached) over ``dataset`` with ``model`` in eval mode and
    without gradients (:class:`~ignite_pseudolabel.inference.InferenceRunner`), then selects
    pseudo-labels with :func:`.select_pseudo_labels`: every sample whose max softmax probability is
    >= ``threshold``, optionally only the most confident ``class_fraction`` of each class, at most
    ``max_per_class`` per class and ``k_best`` overall. Per batch it only appends the labels and
    confidences to lists on the device (no host synchronisation); they are concatenated once at the
    end. Predictions with a non-finite logit are never accepted, nor are samples whose inputs hold a
    NaN or an infinity: these are replaced by zeros before the forward pass
    (:func:`~ignite_pseudolabel.batch.zero_non_finite_rows`), so that they cannot spread to the rest
    of their batch, and get confidence 0.

    **Dense predictions** (a segmentation model's ``(N, C, d1, ...)`` logits) give per-pixel
    pseudo-labels (:class:`~ignite_pseudolabel.selection.DenseSelection`, chosen once, when the
    first logits are dense): ``threshold`` applies to every pixel, and each sample's label map is
    stored in the compact encoding of :func:`~ignite_pseudolabel.label_maps.encode_label_maps`
    (``uint8``, the unconfident pixels set to ``ignore_index``; 48 x 48 maps of 5,000 images take
    11 MB). A sample is accepted when at least one of its pixels is; its confidence is the mean
    confidence of its pixels (``k_best`` keeps the most confident samples; ``max_per_class`` and
    ``class_fraction`` do not apply). :attr:`labels` then holds the maps, ``dataset`` yields
    ``(input, label_map)`` pairs (decode them with :class:`~ignite_pseudolabel.dense.DensePrepareBatch`),
    :attr:`class_counts` counts pixels and :attr:`accuracy` is per pixel against ``held_back_targets``
    maps. ``train_dataset`` must then keep the pixels where they are (photometric transforms only):
    the maps are not moved with the images.

    Under ``ignite.distributed`` every rank predicts its shard of ``dataset``; at the end of the round
    the (position, label, confidence) triples of all ranks are gathered, the repeats that
    ``DistributedSampler`` pads the shards with are dropped, and every rank selects from the same
    predictions, so all ranks hold the identical pseudo-labeled set. Call the miner on every rank.

    By default every round replaces the pseudo-labeled set. With ``grow=True`` the set grows as in
    scikit-learn's ``SelfTrainingClassifier`` (:class:`~ignite_pseudolabel.rounds.MiningRounds`): an
    accepted sample keeps the label it was accepted with, each round selects among the samples not
    accepted yet, and :attr:`accepted_round` records the round in which each sample was accepted.
    After ``max_rounds`` rounds the miner stops mining.

    The result is the content of ``dataset``, a :class:`PseudoLabeledDataset` view that
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
        train_dataset: the dataset that the attribute ``dataset`` indexes into: the same samples in the same order,
            typically with training transforms (default: ``dataset``).
        batch_size: inference batch size.
        num_workers: ``DataLoader`` workers for inference.
        device: where to run the model (default: the device of the model's first parameter).
        non_blocking: copy batches to the device asynchronously (the loader pins memory on CUDA), so
            that the host does not wait for each copy.
        amp_dtype: run inference under ``torch.autocast`` with this dtype (e.g. ``torch.bfloat16``).
        held_back_targets: the held-back true label of every sample of ``dataset`` (benchmarks have
            them): enables :attr:`accuracy`. Never used for selection. ``(N, d1, ...)`` label maps for
            dense predictions (pixels whose value is not a class are not counted).
        ignore_index: the value of unconfident pixels in the label maps of dense predictions; not a
            class.
        true_labels: deprecated name of ``held_back_targets``.

    Attributes:
        dataset: the :class:`PseudoLabeledDataset` with the accepted samples.
        engine: the inference engine.
        indices: positions (into ``dataset``) of the accepted samples (a CPU tensor).
        labels: pseudo-labels of the accepted samples (a CPU tensor).
        confidences: confidences of the accepted samples (a CPU tensor).
        all_confidences: max softmax probability of every sample of the last round (0 for
            non-finite inputs or predictions), e.g. for a histogram.
        num_non_finite: samples of the last round with non-finite inputs or logits (never accepted).
        class_counts: accepted samples per class.
        accuracy: fraction of correct pseudo-labels (``None`` without ``held_back_targets`` or when
            nothing was accepted).
        rounds: mining rounds run so far.
        accepted_round: for every sample of ``dataset``, the round (from 1) in which its current
            pseudo-label was accepted, -1 if it has none.
        held_back_targets: the held-back true labels, or ``None``.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> _ = torch.manual_seed(0)
        >>> model = nn.Linear(2, 2)
        >>> with torch.no_grad():
        ...     _ = model.weight.copy_(torch.tensor([[8.0, 0.0], [-8.0, 0.0]])), model.bias.zero_()
        >>> unlabeled = torch.tensor([[1.0, 0.0], [0.01, 0.0], [-1.0, 0.0]])
        >>> miner = PseudoLabelMiner(model, unlabeled, threshold=0.99, held_back_targets=torch.tensor([0, 0, 0]))
        >>> pseudo = miner.run()
        >>> miner.indices.tolist(), miner.labels.tolist(), len(pseudo), miner.accuracy
        ([0, 2], [0, 1], 2, 0.5)

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
        ``k_best``, ``class_fraction``, ``grow``, ``max_rounds``, ``accepted_round``; sharded under
        ``ignite.distributed``.
    .. versionchanged:: 0.3.0
        ``threshold=0``; ``TensorDataset(x)`` datasets; dense predictions (label maps,
        ``ignore_index``); samples with non-finite inputs are zeroed before the forward pass and
        never accepted. ``held_back_targets`` (the name used across the package) replaces
        ``true_labels``; the accuracy is published as ``engine.state.mined_accuracy``.
    .. deprecated:: 0.3.0
        The argument and attribute ``true_labels`` (use ``held_back_targets``) and
        ``engine.state.pseudo_label_accuracy`` (use ``mined_accuracy``, which holds the same value;
        not the loss's ``pseudo_accuracy``, which measures online pseudo-labels per training batch).
        0.4 removes them.
    """

    #: The attributes that :meth:`attach` publishes on the trainer's ``engine.state``, the number of
    #: pseudo-labels and :attr:`accuracy` twice (``pseudo_label_accuracy``, the second, is deprecated).
    state_attributes: ClassVar[tuple[str, ...]] = ("num_pseudo_labels", "mined_accuracy", "pseudo_label_accuracy")

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
        held_back_targets: torch.Tensor | None = None,
        ignore_index: int = 255,
        true_labels: torch.Tensor | None = None,
    ) -> None:
        self._runner = InferenceRunner(model, self._encode, self._select, device=device, non_blocking=non_blocking,
                                       amp_dtype=amp_dtype, name="PseudoLabelMiner")
        check_map_style("dataset", dataset)
        if len(dataset) == 0:  # type: ignore[arg-type]
            raise ValueError("Argument dataset should hold at least one sample, but given an empty dataset")
        self._selection = AutoSelection(ClassSelection(threshold, max_per_class=max_per_class, k_best=k_best,
                                                       class_fraction=class_fraction), ignore_index=ignore_index)
        config = self._selection.classes.criteria
        self.threshold, self.max_per_class, self.k_best, self.class_fraction = config.values()
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.num_workers = check_int("num_workers", num_workers, minimum=0)
        view_of: Any = dataset if train_dataset is None else train_dataset
        if len(view_of) != len(dataset):  # type: ignore[arg-type]
            raise ValueError(f"Argument train_dataset should have the same samples as dataset ({len(dataset)}), but "
                             f"given {len(view_of)} samples")  # type: ignore[arg-type]
        self.held_back_targets = _held_back_targets(held_back_targets, true_labels, len(dataset))  # type: ignore
        self._rounds = MiningRounds(PseudoLabeledDataset(view_of), grow=grow, max_rounds=max_rounds,
                                    num_classes=num_classes, config=config)
        self.model, self.source, self.ignore_index = model, dataset, self._selection.ignore_index
        self.grow, self.max_rounds = self._rounds.grow, self._rounds.max_rounds
        self.device, self.non_blocking, self.amp_dtype = self._runner.device, non_blocking, amp_dtype
        self.dataset, self.engine = self._rounds.dataset, self._runner.engine
        # published: the number of pseudo-labels, mined_accuracy and its deprecated alias pseudo_label_accuracy
        self._publisher = StatePublisher(self.state_attributes, lambda: (self.indices.numel(), self.accuracy,
                                                                         self.accuracy), owner="PseudoLabelMiner")
        self.all_confidences, self.num_non_finite, self._warned_empty = torch.empty(0), 0, False

    # ----------------------------------------------------------------------------------------- results
    indices = property(lambda self: self._rounds.indices, doc="Positions of the accepted samples.")
    labels = property(lambda self: self._rounds.labels, doc="Pseudo-labels (or label maps) of the accepted samples.")
    confidences = property(lambda self: self._rounds.confidences, doc="Confidences of the accepted samples.")
    accepted_round = property(lambda self: self._rounds.accepted_round, doc="Round of each sample's label, or -1.")
    rounds = property(lambda self: self._rounds.rounds, doc="Mining rounds run so far.")
    num_classes = property(lambda self: self._rounds.num_classes, doc="Number of classes (``None`` until known).")

    @property
    def class_counts(self) -> torch.Tensor:
        """Accepted pseudo-labels per class (``int64``, one entry per class; pixels, for label maps)."""
        return self._selection.class_counts(self.labels, self.num_classes or 0)

    @property
    def accuracy(self) -> float | None:
        """Fraction of accepted pseudo-labels equal to the held-back targets, when those were given."""
        if self.held_back_targets is None or self.indices.numel() == 0:
            return None
        truth = self.held_back_targets[self.indices]
        return self._selection.accuracy(self.labels, truth, self.num_classes or 0)

    @property
    def true_labels(self) -> torch.Tensor | None:
        """Deprecated alias of ``held_back_targets``.

        .. deprecated:: 0.3.0
            Use ``held_back_targets``; 0.4 removes ``true_labels``.
        """
        warnings.warn(_RENAMED, DeprecationWarning, stacklevel=2)
        return self.held_back_targets

    @true_labels.setter
    def true_labels(self, value: torch.Tensor | None) -> None:
        warnings.warn(_RENAMED, DeprecationWarning, stacklevel=2)
        self.held_back_targets = value

    # ------------------------------------------------------------------------------------------ running
    def attach(self, engine: Engine, event: Events | CallableEventWithFilter | EventsList = Events.STARTED) -> None:
        """Mines on ``event`` of ``engine`` (the trainer) and publishes the result on its state.

        After each round ``engine.state.num_pseudo_labels`` and ``engine.state.mined_accuracy`` (and
        its deprecated alias ``pseudo_label_accuracy``) are set. On ``Events.STARTED`` the miner only
        mines if it has not mined yet, so a run resumed with this miner's state keeps the
        pseudo-labeled set it had.

        Raises:
            TypeError: if ``engine`` is not an ``Engine``.
            ValueError: if the miner is already attached or the state attributes exist.
        """
        check_attach(self, engine, self._publisher.engine)
        self._publisher.attach(engine)
        for e in list(event) if isinstance(event, EventsList) else [event]:
            engine.add_event_handler(e, self._mine_once if e == Events.STARTED else self)

    def _mine_once(self, engine: Engine) -> None:
        if self.rounds == 0:
            self(engine)

    def __call__(self, engine: Engine | None = None) -> None:
        """Runs a mining round, unless ``max_rounds`` rounds have already run."""
        if self._rounds.due:
            self.run()

    def run(self) -> PseudoLabeledDataset:
        """Runs one mining round now and returns ``dataset`` with the new pseudo-labeled set."""
        self._runner.run(self._make_loader())
        return self.dataset

    def _make_loader(self) -> DataLoader:
        """A sequential loader over the dataset, sharded under ``ignite.distributed``; host samples are
        pinned on CUDA (samples already on a device cannot be)."""
        pin = self._device().type == "cuda" and _on_host(self.source[0])
        return DataLoader(self.source, batch_size=self.batch_size, shuffle=False, sampler=shard_sampler(self.source),
                          num_workers=self.num_workers, pin_memory=pin)

    def _device(self) -> torch.device:
        return self._runner.target_device()

    def _encode(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The runner's per-batch step: checks the number of classes; the selection encodes the logits."""
        encoded = self._selection.encode(logits)
        if self.num_classes is not None and logits.shape[1] != self.num_classes:
            raise ValueError(f"The model outputs {logits.shape[1]} classes, but num_classes={self.num_classes}")
        self._rounds.num_classes = int(logits.shape[1])
        return encoded

    def _select(self, positions: torch.Tensor, labels: torch.Tensor, confidences: torch.Tensor) -> None:
        """The runner's end of a pass: selects among every prediction, records the round, publishes it."""
        keep = self._selection.select(labels, confidences, self._rounds.candidates(positions))
        new = positions[keep]
        self._rounds.record(new, labels[keep], confidences[keep])
        self.all_confidences = confidences
        self.num_non_finite = int((confidences == 0).sum())
        if self.num_non_finite:
            warnings.warn(f"PseudoLabelMiner: {self.num_non_finite} of {positions.numel()} samples had "
                          "non-finite inputs or logits and were not accepted", RuntimeWarning, stacklevel=3)
        if new.numel() == 0 and not self._warned_empty:
            self._warned_empty = True
            what = "no new sample" if self.grow else "no sample"
            warnings.warn(f"PseudoLabelMiner accepted {what} in round {self.rounds} (threshold {self.threshold}, "
                          f"highest confidence {float(confidences.max()):.4f}); training continues with "
                          f"{len(self.dataset)} pseudo-labels", RuntimeWarning, stacklevel=3)
        self._publisher()

    # ---------------------------------------------------------------------------------------- state
    def state_dict(self) -> OrderedDict:
        """The accepted set and the configuration it was mined with (tensors and plain Python only)."""
        return self._rounds.state_dict()

    def load_state_dict(self, state_dict: Mapping) -> None:
        """Restores the pseudo-labeled set.

        Raises:
            ValueError: if the state was saved for a dataset of another size, with other selection
                criteria, growth mode or number of classes.
        """
        self._rounds.load_state_dict(state_dict)
        self._selection.restore(self.labels)
        self._publisher()


_RENAMED = "PseudoLabelMiner.true_labels is deprecated and will be removed in 0.4: use held_back_targets instead"


def _held_back_targets(targets: Any, true_labels: Any, size: int) -> torch.Tensor | None:
    """``held_back_targets``, or the deprecated ``true_labels`` (with a warning at the miner's caller), checked."""
    name = "held_back_targets"
    if true_labels is not None:
        if targets is not None:
            raise ValueError("Arguments held_back_targets and true_labels (its deprecated name) should not both "
                             "be given")
        warnings.warn(_RENAMED, DeprecationWarning, stacklevel=3)
        name, targets = "true_labels", true_labels
    if targets is None:
        return None
    targets = torch.as_tensor(targets)
    if targets.shape[:1] != (size,):
        raise ValueError(f"Argument {name} should have shape ({size},), one label per sample of dataset (or "
                         f"({size}, d1, ...) label maps), but given {tuple(targets.shape)}")
    return targets


# Kept for code that imported it (0.2); the names live on the class now.
STATE_ATTRIBUTES = PseudoLabelMiner.state_attributes
