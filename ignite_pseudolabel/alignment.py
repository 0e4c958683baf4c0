"""Distribution alignment of pseudo-label probabilities (ReMixMatch) and temperature sharpening."""

from __future__ import annotations

import torch
from torch import nn

from ._validation import check_float, check_int
from .thresholds import _masked_mean

__all__ = ["DistributionAlignment", "sharpen"]


def sharpen(probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """Temperature sharpening of class probabilities along dimension 1: ``p^(1/T)`` renormalised.

    ``temperature < 1`` makes the distribution more confident; ``1`` leaves it unchanged.

    Examples:
        >>> sharpen(torch.tensor([[0.6, 0.4]]), 0.5)
        tensor([[0.6923, 0.3077]])
    """
    powered = probs.clamp(min=1e-12) ** (1.0 / temperature)
    return powered / powered.sum(dim=1, keepdim=True)


class DistributionAlignment(nn.Module):
    """ReMixMatch's distribution alignment of pseudo-label probabilities (Berthelot et al., 2020).

    Multiplies the probabilities of each unlabeled prediction by ``target / running`` and renormalises,
    where ``running`` is the exponential moving average of the model's mean prediction on unlabeled
    data and ``target`` the expected class distribution (uniform by default, or e.g. the labeled
    class frequencies). It counters the drift of pseudo-labels towards the classes the model already
    favours. The running average is a buffer (saved in ``state_dict``) and is averaged across
    processes under ``ignite.distributed``.

    Args:
        num_classes: number of classes.
        target: expected class distribution (default: uniform); normalised to sum to 1.
        momentum: EMA momentum of the running mean prediction, in [0, 1).

    Examples:
        >>> align = DistributionAlignment(2, momentum=0.0)
        >>> align(torch.tensor([[0.9, 0.1], [0.7, 0.3]]), torch.tensor([True, True]))
        tensor([[0.6923, 0.3077],
                [0.3684, 0.6316]])

    .. versionadded:: 0.2.0
    """

    target: torch.Tensor
    running: torch.Tensor

    def __init__(self, num_classes: int, target: torch.Tensor | None = None, momentum: float = 0.999) -> None:
        super().__init__()
        self.num_classes = num_classes = check_int("num_classes", num_classes, minimum=2)
        self.momentum = check_float("momentum", momentum, low=0.0, high=1.0, high_inclusive=False)
        if target is None:
            target = torch.full((num_classes,), 1.0 / num_classes)
        target = torch.as_tensor(target, dtype=torch.float32)
        bad = target.shape != (num_classes,) or not torch.isfinite(target).all() or (target < 0).any()
        if bad or target.sum() <= 0:
            raise ValueError(f"Argument target should be {num_classes} non-negative class frequencies, but given "
                             f"{target.tolist()}")
        self.register_buffer("target", target / target.sum())
        self.register_buffer("running", torch.full((num_classes,), 1.0 / num_classes))

    def forward(self, probs: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Aligns ``(M, C)`` probabilities; rows where ``valid`` is False do not update the average."""
        m = self.momentum
        mean, count = _masked_mean(probs, valid)  # over all processes
        self.running = torch.where(count > 0, m * self.running + (1 - m) * mean, self.running)
        aligned = probs * (self.target / self.running.clamp(min=1e-12)).to(probs.dtype)
        return aligned / aligned.sum(dim=1, keepdim=True).clamp(min=1e-12)

    def extra_repr(self) -> str:
        return f"num_classes={self.target.numel()}, momentum={self.momentum}"
