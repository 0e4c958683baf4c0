"""The pure maths of the pseudo term: hard pseudo-labels and cross-entropies over masked or weighted rows.

Functions of tensors only, without state, engine or host synchronisation; the objects of the loss
pipeline (:mod:`ignite_pseudolabel.unsupervised`, :mod:`ignite_pseudolabel.pseudo_term`) are thin
wrappers around them. ``ignite_pseudolabel.losses`` re-exports them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._stats import broadcast_valid, confident_labels, restrict, used

__all__ = ["hard_pseudo_labels", "masked_cross_entropy", "masked_soft_cross_entropy"]


def hard_pseudo_labels(
    logits: torch.Tensor, threshold: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hard pseudo-labels (the argmax over classes) and the mask of those confident enough to use.

    Works on classification logits ``(N, C)`` and on dense logits ``(N, C, d1, ...)``, where every
    element gets its own label and mask entry. A prediction with a non-finite logit is never used.

    Args:
        logits: the model's outputs; the class dimension is 1. Gradients never flow through the result.
        threshold: keep predictions whose softmax probability is >= this value (``None``: keep all,
            as in Lee 2013).

    Returns:
        ``(labels, mask)``: ``int64`` labels and a ``bool`` mask, both of shape ``(N, d1, ...)``.

    Examples:
        >>> logits = torch.tensor([[2.0, 0.0], [0.0, 0.1], [float("nan"), 0.0]])
        >>> labels, mask = hard_pseudo_labels(logits, threshold=0.8)
        >>> labels.tolist()[:2], mask.tolist()
        ([0, 1], [True, False, False])
    """
    if logits.ndim < 2:
        raise ValueError(f"Expected logits of shape (N, C, ...), but given shape {tuple(logits.shape)}")
    confidence, labels, finite = confident_labels(logits)
    mask = finite if threshold is None else finite & (confidence >= threshold)
    return labels, mask


def _weighted_average(per_prediction: torch.Tensor, keep: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """The sum of the kept (weighted) values over the number of predictions (of the valid ones, when given)."""
    if valid is None:
        return (per_prediction * keep).mean()
    return (per_prediction * keep).sum() / valid.sum().clamp(min=1)


def masked_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, *, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Cross-entropy averaged over *all* predictions, the masked-out ones contributing zero.

    Dividing by the number of predictions rather than of kept ones follows FixMatch: the term's weight
    grows with the fraction of confident predictions. Masked-out predictions never produce NaN, in
    the value or in the gradient, even when their logits are NaN or infinite. With ``valid``, the
    predictions outside it (e.g. of samples whose inputs were not finite) are left out altogether:
    they contribute zero and do not count in the denominator either.

    Args:
        logits: ``(N, C, d1, ...)`` logits.
        labels: ``(N, d1, ...)`` integer labels.
        mask: ``(N, d1, ...)`` boolean mask of the predictions to use, or float weights (SoftMatch):
            each prediction's cross-entropy is multiplied by its weight.
        valid: ``(N,)`` (per sample) or ``(N, d1, ...)`` boolean mask of the predictions that count
            at all (default: all), e.g. the ``unlabeled_valid`` of a
            :class:`~ignite_pseudolabel.batch.SemiSupervisedTarget`.

    Returns:
        A scalar tensor (zero when ``N == 0`` or no prediction is valid).

    .. versionchanged:: 0.3.0
        ``mask`` may hold float weights.

    Raises:
        ValueError: if ``valid`` is not a bool tensor of shape ``(N,)`` or ``(N, d1, ...)``.

    Examples:
        >>> logits = torch.tensor([[0.0, 0.0], [float("inf"), 0.0]])
        >>> masked_cross_entropy(logits, torch.tensor([0, 0]), torch.tensor([True, False]))
        tensor(0.3466)
        >>> masked_cross_entropy(logits, torch.tensor([0, 0]), torch.tensor([True, True]),
        ...                      valid=torch.tensor([True, False]))  # averaged over the valid row only
        tensor(0.6931)
    """
    if logits.shape[0] == 0:
        return logits.sum() * 0.0
    # Zero the logits of masked-out predictions so that neither the loss nor its gradient sees NaN.
    valid = broadcast_valid(valid, mask.shape)
    keep = restrict(mask, valid)
    per_prediction = F.cross_entropy(torch.where(used(keep).unsqueeze(1), logits, 0.0), labels, reduction="none")
    return _weighted_average(per_prediction, keep, valid)  # finite everywhere: masked-out rows saw zero logits


def masked_soft_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, *, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Cross-entropy against soft targets (class probabilities), averaged like :func:`.masked_cross_entropy`.

    Args:
        logits: ``(N, C, d1, ...)`` logits.
        targets: ``(N, C, d1, ...)`` target probabilities (e.g. sharpened pseudo-labels).
        mask: ``(N, d1, ...)`` boolean mask of the predictions to use, or float weights.
        valid: ``(N,)`` or ``(N, d1, ...)`` boolean mask of the predictions that count at all, as in
            :func:`.masked_cross_entropy` (default: all).

    Raises:
        ValueError: if ``valid`` is not a bool tensor of shape ``(N,)`` or ``(N, d1, ...)``.

    Examples:
        >>> logits = torch.tensor([[0.0, 0.0], [float("nan"), 0.0]])
        >>> masked_soft_cross_entropy(logits, torch.tensor([[0.9, 0.1], [1.0, 0.0]]), torch.tensor([True, False]))
        tensor(0.3466)
    """
    if logits.shape[0] == 0:
        return logits.sum() * 0.0
    valid = broadcast_valid(valid, mask.shape)
    keep = restrict(mask, valid)
    rows = used(keep).unsqueeze(1)
    log_probs = torch.log_softmax(torch.where(rows, logits, 0.0).float(), dim=1)
    per_prediction = -(torch.where(rows, targets, 0.0) * log_probs).sum(dim=1)
    return _weighted_average(per_prediction, keep, valid)
