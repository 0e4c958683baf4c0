"""The unsupervised-loss slot of the pseudo term: what the student's predictions are trained with.

An unsupervised loss is a module called as ``loss(student_logits, targets, weights, valid=...)``:
``student_logits`` ``(N, C, d1, ...)``, ``targets`` the label source's targets in the same layout
(``(N, d1, ...)`` labels or ``(N, C, d1, ...)`` distributions), ``weights`` ``(N, d1, ...)`` (a
``bool`` mask or float weights, 0 for unused predictions, whose logits may be non-finite) and
``valid`` the predictions that count at all (``None``: all). It returns a scalar.
"""

from __future__ import annotations

import torch
from torch import nn

from .functional import masked_cross_entropy, masked_soft_cross_entropy

__all__ = ["MaskedCrossEntropy", "UnsupervisedLoss"]


class UnsupervisedLoss(nn.Module):
    """Base class of the unsupervised losses (see the module description).

    .. versionadded:: 0.3.0
    """

    def forward(self, logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, *,
                valid: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError


class MaskedCrossEntropy(UnsupervisedLoss):
    """Cross-entropy against hard or soft targets, weighted and averaged over all predictions (FixMatch).

    Integer targets use :func:`~ignite_pseudolabel.functional.masked_cross_entropy`, probability
    targets :func:`~ignite_pseudolabel.functional.masked_soft_cross_entropy`; the unused predictions
    contribute 0 and count in the average, as in FixMatch and USB.

    Examples:
        >>> loss = MaskedCrossEntropy()
        >>> logits = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
        >>> loss(logits, torch.tensor([0, 0]), torch.tensor([1.0, 0.0]))  # ln 2 / 2
        tensor(0.3466)

    .. versionadded:: 0.3.0
    """

    def forward(self, logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, *,
                valid: torch.Tensor | None = None) -> torch.Tensor:
        if targets.is_floating_point():
            return masked_soft_cross_entropy(logits, targets, weights, valid=valid)
        return masked_cross_entropy(logits, targets, weights, valid=valid)
