"""The engine-free semi-supervised criterion: predictions and target in, ``L_labeled + weight * L_pseudo`` out.

:class:`SemiSupervisedLoss` splits the predictions of one forward pass as the
:class:`~ignite_pseudolabel.batch.SemiSupervisedTarget` describes them (:func:`split_rows`), applies
the supervised loss to the labeled rows and a pseudo term to the others: the
:class:`~ignite_pseudolabel.pseudo_term.PseudoTerm` pipeline for online pseudo-labels, a masked
cross-entropy for mined ones. It knows nothing of engines: the weight is a number or a callable,
and the statistics of the last call are a small record of device tensors (:class:`LossStats`).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, cast

import torch
import torch.nn.functional as F
from torch import nn

from ._stats import broadcast_valid, restrict
from ._validation import check_callable, check_float, check_instance
from .batch import SemiSupervisedTarget
from .functional import masked_cross_entropy
from .pseudo_term import PseudoTerm

__all__ = ["LossStats", "Rows", "SemiSupervisedLoss", "split_rows"]


class Rows(NamedTuple):
    """The predictions of one forward pass, split as their target describes them (see :func:`split_rows`).

    Attributes:
        labeled: the labeled rows' logits.
        student: the logits trained on pseudo-labels (unlabeled or pseudo-labeled rows).
        source: the logits the pseudo-labels come from (online), or ``None`` (mined).
        given_labels: the mined pseudo-labels, or ``None`` (online).
        valid: which student predictions count at all, or ``None`` (all).
        held_back_targets: held-back truth aligned with the student rows, or ``None``.
    """

    labeled: torch.Tensor
    student: torch.Tensor
    source: torch.Tensor | None
    given_labels: torch.Tensor | None
    valid: torch.Tensor | None
    held_back_targets: torch.Tensor | None


class LossStats(NamedTuple):
    """Detached statistics of one call of :class:`SemiSupervisedLoss`, on the predictions' device (this process).

    Attributes:
        supervised_loss: the labeled term.
        pseudo_loss: the pseudo term, unweighted and without regularisers.
        pseudo_mask_rate: the mean weight of the student predictions (the fraction used, for a mask); of dense
            predictions, over their valid pixels (padding does not count).
        pseudo_non_finite_inputs: samples left out because their inputs were not finite.
        pseudo_correct: weighted count of correct pseudo-labels against the held-back truth, or ``None``
            without one.
        pseudo_used: weighted count of used pseudo-labels against the held-back truth, or ``None`` without one.
        regularisers: each regulariser's unweighted term by name.
        weights: online pseudo-labels only: the weight (mask) of every student prediction, ``(M, d1, ...)``,
            for per-sample or per-class monitoring; else ``None``.
        labels: online pseudo-labels only: the hard pseudo-label of every student prediction, ``(M, d1, ...)``;
            else ``None``.
    """

    supervised_loss: torch.Tensor
    pseudo_loss: torch.Tensor
    pseudo_mask_rate: torch.Tensor
    pseudo_non_finite_inputs: torch.Tensor
    pseudo_correct: torch.Tensor | None
    pseudo_used: torch.Tensor | None
    regularisers: dict[str, torch.Tensor]
    weights: torch.Tensor | None = None
    labels: torch.Tensor | None = None


def split_rows(y_pred: torch.Tensor, target: SemiSupervisedTarget) -> Rows:
    """Splits the predictions as ``target`` describes them.

    Labeled rows first; then mined rows (``pseudo_labels``), or the student's rows with a teacher's
    logits as sources, or weak then strong rows (``num_views == 2``; when the student's inputs were
    mixed, ``target.mix`` mixes the weak rows' predictions alike), or rows that are their own source.

    Raises:
        ValueError: if the number of rows does not match the target.

    Examples:
        >>> y_pred = torch.arange(10.0).view(5, 2)
        >>> rows = split_rows(y_pred, SemiSupervisedTarget(torch.tensor([0]), num_views=2))
        >>> rows.source[:, 0].tolist(), rows.student[:, 0].tolist()
        ([2.0, 4.0], [6.0, 8.0])
    """
    n_labeled = target.labels.shape[0]
    other = y_pred[n_labeled:]
    n_other = other.shape[0]
    expected = n_other if target.pseudo_labels is None else target.pseudo_labels.shape[0]
    if expected != n_other or (target.num_views == 2 and n_other % 2):
        raise ValueError(f"The predictions have {y_pred.shape[0]} rows, which does not match {n_labeled} labels "
                         f"plus {expected} pseudo-labeled or unlabeled rows ({target.num_views} view(s))")
    source: torch.Tensor | None = other
    student = other
    if target.pseudo_labels is not None:
        source = None
    elif target.teacher_logits is not None:
        source = target.teacher_logits
    elif target.num_views == 2:
        source, student = other[: n_other // 2], other[n_other // 2:]
        if target.mix is not None and n_other:  # the student's inputs were mixed: mix the weak view's predictions
            source = target.mix(source)
    return Rows(y_pred[:n_labeled], student, source, target.pseudo_labels, target.unlabeled_valid,
                target.held_back_targets)


class SemiSupervisedLoss(nn.Module):
    """``L_labeled + weight * (L_pseudo + regularisers)``: an ``nn.Module`` criterion without any engine.

    Online rows go through ``pseudo_term``; mined rows are trained on their labels with a masked
    cross-entropy (non-finite predictions and invalid samples left out). While the weight is 0, or
    without unlabeled rows, the loss is the supervised loss alone. After every call :attr:`stats`
    holds a :class:`LossStats` record (device tensors, no host synchronisation, not reduced across
    processes: :mod:`ignite_pseudolabel.publishing` does that where they are read).

    Args:
        pseudo_term: the online pseudo term (default: hard labels, every prediction used).
        supervised_loss: loss of the labeled rows, ``fn(logits, labels)`` (default cross-entropy).
        weight: the pseudo term's weight: a number >= 0 or a callable returning one (e.g. reading a
            schedule).
        held_back_targets: true labels of the unlabeled dataset, indexed by ``target.sample_index``,
            for ``pseudo_correct`` / ``pseudo_used`` only (benchmarks).

    Examples:
        >>> from ignite_pseudolabel import FixedThreshold
        >>> criterion = SemiSupervisedLoss(PseudoTerm(policy=FixedThreshold(0.9)), weight=2.0)
        >>> y_pred = torch.tensor([[2.0, 0.0], [5.0, 0.0], [0.0, 0.0]])  # one labeled, two unlabeled rows
        >>> value = criterion(y_pred, SemiSupervisedTarget(torch.tensor([0])))
        >>> float(criterion.stats.pseudo_mask_rate), bool(value > criterion.stats.supervised_loss)
        (0.5, True)

    .. versionadded:: 0.3.0
    """

    def __init__(self, pseudo_term: PseudoTerm | None = None, *,
                 supervised_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                 weight: float | Callable[[], float] = 1.0, held_back_targets: torch.Tensor | None = None) -> None:
        super().__init__()
        self.term = PseudoTerm() if pseudo_term is None else check_instance("pseudo_term", pseudo_term, PseudoTerm)
        self.supervised_loss = F.cross_entropy if supervised_loss is None else \
            check_callable("supervised_loss", supervised_loss)
        self.weight = weight if callable(weight) else check_float("weight", weight, low=0.0)
        if held_back_targets is not None:
            held_back_targets = torch.as_tensor(held_back_targets)
            if held_back_targets.ndim != 1 or held_back_targets.dtype.is_floating_point:
                raise ValueError(f"Argument held_back_targets should be a 1-D tensor of integer labels, but given "
                                 f"shape {tuple(held_back_targets.shape)} and dtype {held_back_targets.dtype}")
        self.held_back_targets = held_back_targets
        #: the statistics of the last call (see :class:`LossStats`), ``None`` before the first.
        self.stats: LossStats | None = None

    def forward(self, y_pred: torch.Tensor, target: SemiSupervisedTarget) -> torch.Tensor:
        if not isinstance(target, SemiSupervisedTarget):
            raise TypeError(f"Expected a SemiSupervisedTarget as target, but given {type(target).__name__}: pass "
                            "prepare_batch=loss.prepare_batch to create_supervised_trainer")
        if not isinstance(y_pred, torch.Tensor) or y_pred.ndim < 2:
            shape = tuple(y_pred.shape) if isinstance(y_pred, torch.Tensor) else type(y_pred).__name__
            raise ValueError(f"Expected the model to output logits of shape (N, C, ...), but given {shape}")
        rows = split_rows(y_pred, target)
        supervised = self.supervised_loss(rows.labeled, target.labels)
        zero = torch.zeros((), device=y_pred.device)
        counts = out = None
        left_out = self._count_left_out(target.unlabeled_valid if rows.student.shape[0] else None, zero)
        if rows.student.shape[0] == 0:
            pseudo, mask_rate, extra = zero, zero, {r.component: zero for r in self.term.regularisers}
        elif rows.given_labels is not None:
            pseudo, mask_rate = self._mined_term(rows)
            extra = {r.component: zero for r in self.term.regularisers}
        else:
            out = self.term(cast(torch.Tensor, rows.source), rows.student, valid=rows.valid, index=target.sample_index,
                            labeled=rows.labeled)
            pseudo, mask_rate, extra = out.value, self._mask_rate(out.weights, rows.valid), out.regularisers
            counts = self._accuracy(out.labels, out.weights, target.sample_index, rows.held_back_targets,
                                    y_pred.shape[1])
        self.stats = LossStats(supervised.detach(), pseudo.detach(), mask_rate.detach(), left_out,
                               *(counts or (None, None)), {k: v.detach() for k, v in extra.items()},
                               None if out is None else out.weights.detach(), None if out is None else out.labels)
        weight = self.weight() if callable(self.weight) else self.weight
        if weight == 0.0 or rows.student.shape[0] == 0:
            return supervised
        return supervised + weight * self.term.total(pseudo, extra)

    @staticmethod
    def _mined_term(rows: Rows) -> tuple[torch.Tensor, torch.Tensor]:
        # Mined rows whose predictions are not finite are left out rather than turning the loss NaN;
        # rows whose inputs were not finite (zeroed by prepare_batch) are left out of the average too.
        usable = broadcast_valid(rows.valid, (rows.student.shape[0], *rows.student.shape[2:]))
        mask = restrict(torch.isfinite(rows.student.detach()).all(dim=1), usable)
        return masked_cross_entropy(rows.student, rows.given_labels, mask, valid=usable), mask.float().mean()

    @staticmethod
    def _mask_rate(weights: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
        """The mean weight of the predictions, over the valid pixels of dense predictions (as UniMatch): the padding
        of a crop does not count, a sample left out altogether (non-finite inputs) counts as unused."""
        if valid is None or valid.ndim < 2:
            return weights.float().mean()
        counted = valid | ~valid.flatten(1).any(dim=1).view(-1, *([1] * (valid.ndim - 1)))
        return weights.float().sum() / counted.sum().clamp(min=1)

    @staticmethod
    def _count_left_out(valid: torch.Tensor | None, zero: torch.Tensor) -> torch.Tensor:
        """Samples none of whose entries of ``valid`` is True (a sample with some invalid pixels only, e.g.
        padding, is not left out)."""
        if valid is None:
            return zero
        return (~(valid.flatten(1).any(dim=1) if valid.ndim > 1 else valid)).sum()

    def _accuracy(self, labels: torch.Tensor, weights: torch.Tensor, index: torch.Tensor | None,
                  truth: torch.Tensor | None, num_classes: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Weighted (correct, used) counts against the aligned ``truth`` (elements whose truth is not a class,
        e.g. 255, not counted) or ``held_back_targets[index]``."""
        if truth is None:
            if self.held_back_targets is None or index is None or labels.ndim != 1:
                return None
            if self.held_back_targets.device != labels.device:
                self.held_back_targets = self.held_back_targets.to(labels.device)
            truth = self.held_back_targets[index]
        else:
            weights = restrict(weights, (truth >= 0) & (truth < num_classes))
        correct = restrict(weights, labels == truth)
        return correct.sum().float(), weights.sum().float()

    def extra_repr(self) -> str:
        weight: Any = "callable" if callable(self.weight) else self.weight
        return f"weight={weight}"
