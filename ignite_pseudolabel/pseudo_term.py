"""The online pseudo term as a pipeline of small objects: label source -> policy -> unsupervised loss -> regularisers.

:class:`PseudoTerm` takes the logits of the pseudo-label sources (a weak view, a teacher's
predictions, or the student's own) and of the student, and returns the term and what it used. Each
slot holds one object, and a new algorithm is a new object in a slot:

* ``labels`` (:mod:`ignite_pseudolabel.labels`): hard, soft with a temperature, aligned;
* ``policy`` (:mod:`ignite_pseudolabel.thresholds`, :mod:`ignite_pseudolabel.weighting`): which
  predictions count and with what weight (a ``bool`` mask or float weights);
* ``loss`` (:mod:`ignite_pseudolabel.unsupervised`): how the student is trained on the targets;
* ``regularisers`` (:mod:`ignite_pseudolabel.regularisers`): terms added with their ``weight``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

import torch
from torch import nn

from ._stats import broadcast_valid, finite_softmax, restrict, used
from ._validation import check_instance
from .labels import HardLabels, LabelSource
from .thresholds import ThresholdPolicy
from .unsupervised import MaskedCrossEntropy, UnsupervisedLoss

__all__ = ["PseudoTerm", "TermOutput"]


class TermOutput(NamedTuple):
    """What :class:`PseudoTerm` returns.

    Attributes:
        value: the unweighted unsupervised loss (a scalar tensor).
        weights: ``(N, d1, ...)`` the weight of every student prediction (``bool`` mask or float).
        labels: ``(N, d1, ...)`` the hard pseudo-label of every prediction.
        regularisers: the unweighted value of each regulariser, by its ``component`` name.
    """

    value: torch.Tensor
    weights: torch.Tensor
    labels: torch.Tensor
    regularisers: dict[str, torch.Tensor]


def _rows(logits: torch.Tensor) -> torch.Tensor:
    """``(N, C, d1, ...)`` -> ``(M, C)``: one row per sample, or per element of dense predictions."""
    return logits.movedim(1, -1).reshape(-1, logits.shape[1])


class PseudoTerm(nn.Module):
    """The online pseudo term, composed of a label source, a policy, an unsupervised loss and regularisers.

    Non-finite source logits, and rows outside ``valid`` (samples whose inputs were not finite,
    padding pixels), are never used and never update a statistic; a non-finite student prediction
    is never trained on. The statistics modules follow the predictions' device.

    Args:
        labels: a :class:`~ignite_pseudolabel.labels.LabelSource` (default: hard labels).
        policy: a :class:`~ignite_pseudolabel.ThresholdPolicy` returning a mask or weights (default:
            every valid prediction, weight 1).
        loss: an :class:`~ignite_pseudolabel.unsupervised.UnsupervisedLoss` (default: masked cross-entropy).
        regularisers: modules adding ``weight * term`` (e.g. :class:`~ignite_pseudolabel.SelfAdaptiveFairness`).

    Examples:
        >>> from ignite_pseudolabel import FixedThreshold
        >>> term = PseudoTerm(policy=FixedThreshold(0.8))
        >>> weak, strong = torch.tensor([[3.0, 0.0], [0.1, 0.0]]), torch.zeros(2, 2)
        >>> out = term(weak, strong)
        >>> out.weights.tolist(), out.labels.tolist(), out.value  # ln 2 on one of two predictions
        ([True, False], [0, 0], tensor(0.3466))

    .. versionadded:: 0.3.0
    """

    def __init__(self, labels: LabelSource | None = None, policy: ThresholdPolicy | None = None,
                 loss: UnsupervisedLoss | None = None, regularisers: Iterable[nn.Module] = ()) -> None:
        super().__init__()
        self.labels = HardLabels() if labels is None else check_instance("labels", labels, LabelSource)
        self.policy = None if policy is None else check_instance("policy", policy, ThresholdPolicy)
        self.loss = MaskedCrossEntropy() if loss is None else check_instance("loss", loss, UnsupervisedLoss)
        self.regularisers = nn.ModuleList(regularisers)
        for i, regulariser in enumerate(self.regularisers):
            if not isinstance(getattr(regulariser, "component", None), str) or not hasattr(regulariser, "weight"):
                raise TypeError(f"Argument regularisers[{i}] should declare a component name and a weight, but "
                                f"given {type(regulariser).__name__}")

    def forward(self, source: torch.Tensor, student: torch.Tensor, *, valid: torch.Tensor | None = None,
                index: torch.Tensor | None = None, labeled: torch.Tensor | None = None) -> TermOutput:
        """The term for source logits and student logits of the same shape ``(N, C, d1, ...)``.

        Args:
            source: logits of the pseudo-label sources (detached here).
            student: logits trained on the pseudo-labels.
            valid: ``(N,)`` or ``(N, d1, ...)`` bool, the predictions that count at all (``None``: all).
            index: ``(N,)`` positions of the samples in their dataset, for per-sample policies.
            labeled: logits of the labeled rows, for policies that compare with them (AdaMatch).
        """
        if source.shape != student.shape:
            raise ValueError(f"The pseudo-label source predictions have shape {tuple(source.shape)}, but the "
                             f"student's have {tuple(student.shape)}")
        self._prepare(source)
        shape = (source.shape[0], *source.shape[2:])
        usable = broadcast_valid(valid, shape)
        probs, ok = finite_softmax(_rows(source.detach()))
        ok = restrict(ok, None if usable is None else usable.reshape(-1))
        out = self.labels(probs, ok)
        weights = self._weights(out.probs, ok, index, labeled)
        # A student prediction that is not finite is not trained on either (its loss would be NaN).
        weights = restrict(weights.view(shape), torch.isfinite(student.detach()).all(dim=1))
        targets = out.targets.view(shape) if out.targets.ndim == 1 else \
            out.targets.view(*shape, -1).movedim(-1, 1)
        student_rows = _rows(student)
        extra = {r.component: r(out.probs, ok, student_rows, used(weights).reshape(-1)) for r in self.regularisers}
        return TermOutput(self.loss(student, targets, weights, valid=usable), weights, out.labels.view(shape), extra)

    def total(self, value: torch.Tensor, regularisers: dict[str, torch.Tensor]) -> torch.Tensor:
        """``value`` plus each regulariser's ``weight`` times its term."""
        for regulariser in self.regularisers:
            value = value + regulariser.weight * regularisers[regulariser.component]
        return value

    def _prepare(self, source: torch.Tensor) -> None:
        """Checks the class count of every part that has one and moves stateful parts to the device."""
        num_classes = source.shape[1]
        for module in self.modules():
            expected = getattr(module, "num_classes", None)
            if module is not self and expected is not None and expected != num_classes:
                raise ValueError(f"The model outputs {num_classes} classes, but the {getattr(module, 'role', 'part')} "
                                 f"{type(module).__name__} was built for num_classes={expected}")
        for module in self.children():
            buffer = next(module.buffers(), None)
            if buffer is not None and buffer.device != source.device:
                module.to(source.device)

    def _weights(self, probs: torch.Tensor, valid: torch.Tensor, index: torch.Tensor | None,
                 labeled: torch.Tensor | None) -> torch.Tensor:
        if self.policy is None:
            return valid
        row_index = index if index is not None and index.shape[0] == probs.shape[0] else None
        if self.policy.needs_index and row_index is None and index is not None:
            raise ValueError(f"{type(self.policy).__name__} works on (N, C) predictions only, one per sample")
        extra: dict[str, Any] = {}
        if self.policy.needs_labeled:
            if labeled is None:
                raise ValueError(f"{type(self.policy).__name__} needs the predictions of the labeled rows")
            extra["labeled_probs"] = finite_softmax(_rows(labeled.detach()))[0]
        return restrict(self.policy(probs, valid, row_index, **extra), valid)
