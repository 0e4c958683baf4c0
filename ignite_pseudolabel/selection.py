"""Which predictions become pseudo-labels: :func:`select_pseudo_labels` and the miner's selection strategies.

A strategy turns a batch of logits into labels and confidences (:meth:`~ClassSelection.encode`, on the
device, no host synchronisation), picks the positions to accept among the predictions of a whole
mining round (:meth:`~ClassSelection.select`) and measures the accepted labels
(:meth:`~ClassSelection.class_counts`, :meth:`~ClassSelection.accuracy`). :class:`ClassSelection`
accepts whole samples by class; :class:`DenseSelection` accepts label maps thresholded per pixel.
:class:`~ignite_pseudolabel.PseudoLabelMiner` uses one of them, chosen once from the shape of its
model's logits.
"""

from __future__ import annotations

from typing import Any

import torch

from ._stats import confident_labels
from ._validation import check_int, optional_float, optional_int, optional_threshold
from .label_maps import encode_label_maps

__all__ = ["AutoSelection", "ClassSelection", "DenseSelection", "select_pseudo_labels"]


def _rank_within_class(positions: torch.Tensor, confidences: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Rank (0 = most confident) of each position among the positions of its class; ties: lower position first."""
    order = torch.argsort(confidences[positions], descending=True, stable=True)  # indices into `positions`
    order = order[torch.argsort(labels[positions][order], stable=True)]
    classes = labels[positions][order]
    counts = torch.bincount(classes)
    ranks = torch.empty_like(positions)
    first_of_class = torch.cumsum(counts, 0) - counts
    ranks[order] = torch.arange(positions.numel(), device=positions.device) - first_of_class[classes]
    return ranks


def select_pseudo_labels(
    confidences: torch.Tensor,
    labels: torch.Tensor,
    threshold: float | None = None,
    *,
    max_per_class: int | None = None,
    k_best: int | None = None,
    class_fraction: float | None = None,
    candidates: torch.Tensor | None = None,
) -> torch.Tensor:
    """Positions of the predictions to accept as pseudo-labels.

    The criteria combine (a prediction must pass all that are given):

    * ``threshold``: confidence >= threshold (scikit-learn's ``criterion="threshold"``, which uses a
      strict ``>``);
    * ``class_fraction``: among the most confident ``ceil(class_fraction * n_c)`` predictions of its
      class, ``n_c`` being the class's number of candidate predictions (per-class percentile
      thresholds, as in curriculum labelling: classes stay balanced relative to their size);
    * ``max_per_class``: among the ``max_per_class`` most confident accepted predictions of its class;
    * ``k_best``: among the ``k_best`` most confident accepted predictions overall (scikit-learn's
      ``criterion="k_best"``).

    Non-positive or NaN confidences (non-finite logits) are never accepted, not even with
    ``threshold=0``, which accepts every other prediction. Ties go to the lower position, so the
    result depends neither on batch sizes nor on the order of computation.

    Args:
        confidences: ``(N,)`` max softmax probability of every prediction.
        labels: ``(N,)`` predicted class of every prediction.
        threshold: minimum confidence, in [0, 1] (0: accept every prediction with a positive
            confidence), or ``None``.
        max_per_class: cap on accepted predictions per class, >= 1.
        k_best: cap on accepted predictions overall, >= 1.
        class_fraction: fraction of each class's predictions to accept, in (0, 1].
        candidates: ``(N,)`` bool mask of the eligible predictions (default: all), e.g. the samples
            not yet pseudo-labeled when a pseudo-labeled set grows round after round.

    Returns:
        Sorted ``int64`` positions into ``confidences``.

    Examples:
        >>> conf = torch.tensor([0.99, 0.5, 0.995, 0.999, 0.98])
        >>> labels = torch.tensor([0, 0, 0, 1, 1])
        >>> select_pseudo_labels(conf, labels, 0.98).tolist()
        [0, 2, 3, 4]
        >>> select_pseudo_labels(conf, labels, 0.98, max_per_class=1).tolist()
        [2, 3]
        >>> select_pseudo_labels(conf, labels, k_best=2).tolist()
        [2, 3]
        >>> select_pseudo_labels(conf, labels, class_fraction=0.5).tolist()
        [0, 2, 3]
        >>> select_pseudo_labels(torch.tensor([0.6, 0.0]), torch.tensor([1, 0]), 0.0).tolist()  # 0.0: non-finite
        [0]

    .. versionchanged:: 0.3.0
        ``threshold=0`` is accepted.
    """
    threshold = optional_threshold("threshold", threshold, allow_zero=True)
    max_per_class = optional_int("max_per_class", max_per_class, minimum=1)
    k_best = optional_int("k_best", k_best, minimum=1)
    class_fraction = optional_float("class_fraction", class_fraction, low=0.0, high=1.0, low_inclusive=False)
    if confidences.ndim != 1 or labels.shape != confidences.shape:
        raise ValueError(f"Arguments confidences and labels should be 1-D of the same length, but given shapes "
                         f"{tuple(confidences.shape)} and {tuple(labels.shape)}")
    eligible = confidences > 0
    if candidates is not None:
        if candidates.shape != confidences.shape or candidates.dtype != torch.bool:
            raise ValueError(f"Argument candidates should be a bool mask of shape {tuple(confidences.shape)}, but "
                             f"given {candidates.dtype} of shape {tuple(candidates.shape)}")
        eligible &= candidates
    positions = torch.nonzero(eligible).flatten()
    if class_fraction is not None and positions.numel() > 0:
        per_class = torch.bincount(labels[positions])
        quota = torch.ceil(class_fraction * per_class.to(torch.float64)).to(torch.int64)
        positions = positions[_rank_within_class(positions, confidences, labels) < quota[labels[positions]]]
    if threshold is not None:
        positions = positions[confidences[positions] >= threshold]
    if max_per_class is not None and positions.numel() > 0:
        positions = positions[_rank_within_class(positions, confidences, labels) < max_per_class]
    if k_best is not None and positions.numel() > k_best:
        positions = positions[torch.argsort(confidences[positions], descending=True, stable=True)[:k_best]]
    return torch.sort(positions).values


class ClassSelection:
    """Selects whole samples by their predicted class: the classification strategy of the miner.

    A prediction's label is its argmax class and its confidence the max softmax probability (0 for
    a prediction with a non-finite logit, never accepted); :meth:`select` applies
    :func:`select_pseudo_labels` with the criteria given here.

    Args:
        threshold: minimum confidence, in [0, 1], or ``None``.
        max_per_class: cap on accepted predictions per class, >= 1.
        k_best: cap on accepted predictions overall, >= 1.
        class_fraction: fraction of each class's predictions to accept, in (0, 1].

    Raises:
        TypeError, ValueError: if an argument is outside the ranges above.

    Examples:
        >>> selection = ClassSelection(0.9, max_per_class=1)
        >>> labels, confidences = selection.encode(torch.tensor([[4.0, 0.0], [0.0, 3.0], [0.0, 5.0]]))
        >>> keep = selection.select(labels, confidences)
        >>> keep.tolist(), selection.class_counts(labels[keep], num_classes=3).tolist()
        ([0, 2], [1, 1, 0])
        >>> selection.accuracy(labels[keep], torch.tensor([0, 0]), num_classes=3)
        0.5

    .. versionadded:: 0.3.0
    """

    def __init__(
        self,
        threshold: float | None = None,
        *,
        max_per_class: int | None = None,
        k_best: int | None = None,
        class_fraction: float | None = None,
    ) -> None:
        self.threshold = optional_threshold("threshold", threshold, allow_zero=True)
        self.max_per_class = optional_int("max_per_class", max_per_class, minimum=1)
        self.k_best = optional_int("k_best", k_best, minimum=1)
        self.class_fraction = optional_float("class_fraction", class_fraction, low=0.0, high=1.0,
                                             low_inclusive=False)

    @property
    def criteria(self) -> dict[str, Any]:
        """The criteria by name (e.g. the configuration a checkpoint must match)."""
        return {"threshold": self.threshold, "max_per_class": self.max_per_class, "k_best": self.k_best,
                "class_fraction": self.class_fraction}

    def encode(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(N, C)`` logits -> ``(N,)`` labels (``int64``) and confidences."""
        confidence, labels, _ = confident_labels(logits)
        return labels, confidence

    def select(
        self, labels: torch.Tensor, confidences: torch.Tensor, candidates: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Sorted positions of the accepted predictions among the eligible ``candidates`` (default: all)."""
        return select_pseudo_labels(confidences, labels, self.threshold, max_per_class=self.max_per_class,
                                    k_best=self.k_best, class_fraction=self.class_fraction, candidates=candidates)

    def class_counts(self, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
        """Accepted labels per class, at least ``num_classes`` entries."""
        return torch.bincount(labels, minlength=num_classes)

    def accuracy(self, labels: torch.Tensor, truth: torch.Tensor, num_classes: int) -> float:
        """Fraction of ``labels`` equal to the held-back ``truth`` (of the same shape)."""
        return float((labels == truth).float().mean())


class DenseSelection:
    """Selects label maps: the strategy of the miner for dense (per-pixel) logits.

    Every pixel gets its argmax class, or ``ignore_index`` when its confidence is below ``threshold``
    (:func:`~ignite_pseudolabel.label_maps.encode_label_maps`, compact ``uint8`` maps); an image's
    confidence is the mean confidence of its pixels. An image is accepted when at least one of its
    pixels is labelled, ``k_best`` keeping the most confident images. Classes are counted, and the
    accuracy measured, per labelled pixel.

    Args:
        threshold: minimum confidence of a pixel, in [0, 1], or ``None`` (every finite pixel).
        k_best: cap on accepted images per round, >= 1.
        ignore_index: the value of the pixels without a pseudo-label; not a class.

    Raises:
        TypeError, ValueError: if an argument is outside the ranges above.

    Examples:
        >>> selection = DenseSelection(0.9)
        >>> logits = torch.tensor([[[[4.0, 0.0]], [[0.0, 0.2]]], [[[0.1, 0.0]], [[0.0, 0.1]]]])  # 2 images of 1 x 2
        >>> maps, confidences = selection.encode(logits)
        >>> maps.tolist(), selection.select(maps, confidences).tolist()
        ([[[0, 255]], [[255, 255]]], [0])
        >>> selection.class_counts(maps[:1], num_classes=2).tolist()
        [1, 0]

    .. versionadded:: 0.3.0
    """

    def __init__(self, threshold: float | None = None, *, k_best: int | None = None, ignore_index: int = 255) -> None:
        self.threshold = optional_threshold("threshold", threshold, allow_zero=True)
        self.k_best = optional_int("k_best", k_best, minimum=1)
        self.ignore_index = check_int("ignore_index", ignore_index, minimum=0)

    def encode(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(N, C, d1, ...)`` logits -> ``(N, d1, ...)`` label maps and ``(N,)`` confidences."""
        return encode_label_maps(logits, self.threshold, self.ignore_index)

    def select(
        self, labels: torch.Tensor, confidences: torch.Tensor, candidates: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Sorted positions of the accepted images among the eligible ``candidates`` (default: all)."""
        labelled = (labels != self.ignore_index).flatten(1).any(1)
        eligible = labelled if candidates is None else labelled & candidates
        return select_pseudo_labels(confidences, torch.zeros_like(labelled, dtype=torch.int64), k_best=self.k_best,
                                    candidates=eligible)

    def class_counts(self, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
        """Labelled pixels per class, at least ``num_classes`` entries."""
        return torch.bincount(labels[labels != self.ignore_index].long(), minlength=num_classes)

    def accuracy(self, labels: torch.Tensor, truth: torch.Tensor, num_classes: int) -> float:
        """Fraction of the labelled pixels whose true label is a class that equal ``truth``."""
        used = (labels != self.ignore_index) & (truth >= 0) & (truth < num_classes)
        return float(((labels.long() == truth) & used).sum() / used.sum().clamp(min=1))


class AutoSelection:
    """:class:`ClassSelection` or :class:`DenseSelection`, whichever the model's logits call for, chosen once.

    Whether a model predicts classes or label maps shows only in its logits: the first logits that
    ``encode`` sees (or label maps given to :meth:`restore`) choose the strategy, which holds from
    then on. Until then the class strategy answers ``class_counts`` and ``accuracy``. The methods
    (``encode``, ``select``, ``class_counts``, ``accuracy``) are those of the strategies.

    Args:
        classes: the strategy for whole samples, whose criteria also make the dense one (its
            ``threshold`` per pixel, its ``k_best``). It needs at least one of ``threshold``,
            ``k_best`` and ``class_fraction``; with ``max_per_class`` or ``class_fraction``, which
            select by class, dense logits raise ``ValueError``.
        ignore_index: as in :class:`DenseSelection`.

    Raises:
        TypeError, ValueError: if ``classes`` is not a :class:`ClassSelection` or has no criterion, or
            ``ignore_index`` is not an integer >= 0.

    Examples:
        >>> selection = AutoSelection(ClassSelection(0.9))
        >>> maps, confidences = selection.encode(torch.tensor([[[[4.0, 0.0]], [[0.0, 0.2]]]]))  # 1 image of 1 x 2
        >>> type(selection.strategy).__name__, maps.tolist()
        ('DenseSelection', [[[0, 255]]])

    .. versionadded:: 0.3.0
    """

    def __init__(self, classes: ClassSelection, *, ignore_index: int = 255) -> None:
        if not isinstance(classes, ClassSelection):
            raise TypeError(f"Argument classes should be a ClassSelection, but given {type(classes).__name__}")
        if classes.threshold is None and classes.k_best is None and classes.class_fraction is None:
            raise ValueError("At least one of the arguments threshold, k_best or class_fraction should be given, "
                             "but all are None")
        self.classes = classes
        self.ignore_index = check_int("ignore_index", ignore_index, minimum=0)
        #: the strategy chosen, ``None`` before the first logits or label maps
        self.strategy: ClassSelection | DenseSelection | None = None

    def _choose(self, dense: bool) -> ClassSelection | DenseSelection:
        if not dense:
            return self.classes
        if self.classes.max_per_class is not None or self.classes.class_fraction is not None:
            raise ValueError("PseudoLabelMiner: max_per_class and class_fraction select whole samples by class; "
                             "they do not apply to dense (per-pixel) predictions")
        return DenseSelection(self.classes.threshold, k_best=self.classes.k_best, ignore_index=self.ignore_index)

    def restore(self, labels: torch.Tensor) -> None:
        """Restored label maps (``labels`` of more than one dimension) choose the dense strategy."""
        if labels.ndim > 1:
            self.strategy = self._choose(dense=True)

    def encode(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.strategy is None:
            self.strategy = self._choose(dense=logits.ndim > 2)
        return self.strategy.encode(logits)

    def select(
        self, labels: torch.Tensor, confidences: torch.Tensor, candidates: torch.Tensor | None = None
    ) -> torch.Tensor:
        return (self.strategy or self.classes).select(labels, confidences, candidates)

    def class_counts(self, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
        return (self.strategy or self.classes).class_counts(labels, num_classes)

    def accuracy(self, labels: torch.Tensor, truth: torch.Tensor, num_classes: int) -> float:
        return (self.strategy or self.classes).accuracy(labels, truth, num_classes)
