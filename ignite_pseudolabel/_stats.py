"""Statistics and row helpers shared by the losses, the policies, the alignment and the miner (private).

Pure tensor functions with no host synchronisation. The names carry no underscore because the whole
module is private; siblings import them from here instead of from each other.
"""

from __future__ import annotations

import ignite.distributed as idist
import torch

__all__: list = []


def masked_mean(values: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean over the valid rows of ``values`` (rows x ...) of all processes, and their number.

    Under ``ignite.distributed`` the sums and counts are all-reduced in one call, so every rank gets
    the same mean. No host synchronisation: with no valid row the mean is 0 and the count 0.

    Examples:
        >>> mean, count = masked_mean(torch.tensor([[1.0, 2.0], [3.0, 4.0], [9.0, 9.0]]),
        ...                           torch.tensor([True, True, False]))
        >>> mean, count
        (tensor([2., 3.]), tensor(2.))
    """
    weight = valid.to(values.dtype).view(-1, *([1] * (values.ndim - 1)))
    total = torch.stack([(values * weight).sum(0).flatten(), weight.sum().expand(values[0].numel())])
    if idist.get_world_size() > 1:
        total = idist.all_reduce(total)  # type: ignore[assignment]
    return (total[0] / total[1].clamp(min=1)).view(values.shape[1:]), total[1, 0]


def finite_softmax(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Class probabilities (softmax over dimension 1, in float32) and the mask of finite predictions.

    A prediction with a non-finite logit gets the probabilities of zero logits (uniform) instead of
    NaN, so that statistics computed over the masked rows never see NaN. The logits are detached:
    pseudo-labels and the statistics built from them carry no gradient.

    Args:
        logits: ``(N, C, d1, ...)`` logits; the class dimension is 1.

    Returns:
        ``(probs, finite)``: ``probs`` of the shape of ``logits`` and ``finite`` of shape ``(N, d1, ...)``.

    Examples:
        >>> probs, finite = finite_softmax(torch.tensor([[0.0, 0.0], [float("nan"), 1.0]]))
        >>> probs, finite
        (tensor([[0.5000, 0.5000],
                [0.5000, 0.5000]]), tensor([ True, False]))
    """
    logits = logits.detach().float()
    finite = torch.isfinite(logits).all(dim=1)
    probs = torch.softmax(torch.where(finite.unsqueeze(1), logits, 0.0), dim=1)
    return probs, finite


def confident_labels(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Softmax -> confidence, label, finite mask: the hard pseudo-label of every prediction.

    Args:
        logits: ``(N, C, d1, ...)`` logits; the class dimension is 1.

    Returns:
        ``(confidence, labels, finite)``, each of shape ``(N, d1, ...)``: the largest class
        probability (0 for a prediction with a non-finite logit), the argmax class (``int64``) and
        the mask of the predictions whose logits are all finite.

    Examples:
        >>> confidence, labels, finite = confident_labels(torch.tensor([[2.0, 0.0], [0.0, float("inf")]]))
        >>> confidence, labels.tolist(), finite.tolist()
        (tensor([0.8808, 0.0000]), [0, 0], [True, False])
    """
    probs, finite = finite_softmax(logits)
    confidence, labels = probs.max(dim=1)
    return torch.where(finite, confidence, 0.0), labels, finite


def broadcast_valid(valid: torch.Tensor | None, shape: tuple[int, ...]) -> torch.Tensor | None:
    """``valid``, ``(N,)`` or ``(N, d1, ...)``, expanded to the predictions' ``shape``, ``(N, d1, ...)``.

    Examples:
        >>> broadcast_valid(torch.tensor([True, False]), (2, 3)).tolist()
        [[True, True, True], [False, False, False]]
    """
    if valid is None:
        return None
    shape = tuple(shape)
    if not isinstance(valid, torch.Tensor) or valid.dtype != torch.bool or valid.ndim == 0 or \
            tuple(valid.shape) != shape[: valid.ndim]:
        given = f"{valid.dtype} of shape {tuple(valid.shape)}" if isinstance(valid, torch.Tensor) else \
            type(valid).__name__
        raise ValueError(f"Argument valid should be a bool tensor of shape {shape[:1]} or {shape}, but given "
                         f"{given}")
    return valid.view(*valid.shape, *([1] * (len(shape) - valid.ndim))).expand(shape)


def restrict(weights: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    """``weights`` (a ``bool`` mask or float weights) set to False / 0 where ``keep`` is False.

    Examples:
        >>> restrict(torch.tensor([0.5, 0.9]), torch.tensor([True, False])), restrict(torch.tensor([True]), None)
        (tensor([0.5000, 0.0000]), tensor([True]))
    """
    if keep is None:
        return weights
    return weights & keep if weights.dtype == torch.bool else torch.where(keep, weights, 0.0)


def used(weights: torch.Tensor) -> torch.Tensor:
    """The ``bool`` mask of the rows with a positive weight (a ``bool`` mask is returned as it is)."""
    return weights if weights.dtype == torch.bool else weights > 0
