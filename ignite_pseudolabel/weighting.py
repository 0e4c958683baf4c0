"""Soft sample weights instead of a hard mask: SoftMatch's truncated Gaussian (Chen et al., 2023).

A policy of the pseudo term may return float weights in [0, 1] rather than a ``bool`` mask: every
pseudo-label then counts, the confident ones fully and the others less, so the quantity-quality
trade-off of a fixed threshold becomes a smooth one. The loss multiplies each prediction's
cross-entropy by its weight; ``pseudo_mask_rate`` becomes the mean weight.
"""

from __future__ import annotations

import torch

from ._stats import masked_mean
from ._validation import check_float, check_int
from .thresholds import ThresholdPolicy

__all__ = ["SoftMatchWeights"]


class SoftMatchWeights(ThresholdPolicy):
    """SoftMatch's weights: a Gaussian of the confidence, truncated at its running mean (Chen et al., 2023).

    With ``mu`` and ``sigma^2`` the exponential moving averages of the mean and the (unbiased)
    variance of the batch's confidences ``max_c p``, a prediction gets weight
    ``exp(-(min(p - mu, 0))^2 / (2 sigma^2 / n_sigma^2))``: 1 at or above the mean, decaying below
    it. As in USB, ``mu`` starts at ``1 / num_classes`` and ``sigma^2`` at 1, and the statistics are
    updated with the batch before its weights are computed; they are computed over the valid
    predictions of all processes under ``ignite.distributed`` (sums and counts reduced in one call,
    so every rank holds the same statistics), without host synchronisation. A batch with fewer than
    two valid predictions leaves them unchanged. Works on dense predictions too (one weight per pixel).

    Use it as ``PseudoLabelLoss(SoftMatchWeights(num_classes))``; SoftMatch also aligns the
    distribution uniformly, with the labels taken from the unaligned probabilities (USB):
    ``labels=AlignedLabels(DistributionAlignment(num_classes), targets_from_aligned=False)``.

    Args:
        num_classes: number of classes (sets the initial mean).
        momentum: EMA momentum of the statistics (SoftMatch: 0.999), in [0, 1).
        n_sigma: the width divisor ``n_sigma`` (SoftMatch: 2), > 0.

    Examples:
        >>> policy = SoftMatchWeights(2, momentum=0.0)
        >>> probs = torch.tensor([[0.9, 0.1], [0.7, 0.3], [0.5, 0.5]])
        >>> weights = policy(probs, torch.tensor([True, True, True]))
        >>> policy.mean, policy.variance  # of the confidences 0.9, 0.7, 0.5
        (tensor(0.7000), tensor(0.0400))
        >>> weights  # exp(-(0.5 - 0.7)^2 / (2 * 0.04 / 4)) for the last
        tensor([1.0000, 1.0000, 0.1353])

    .. versionadded:: 0.3.0
    """

    mean: torch.Tensor
    variance: torch.Tensor

    def __init__(self, num_classes: int, momentum: float = 0.999, n_sigma: float = 2.0) -> None:
        super().__init__()
        self.num_classes = check_int("num_classes", num_classes, minimum=2)
        self.momentum = check_float("momentum", momentum, low=0.0, high=1.0, high_inclusive=False)
        self.n_sigma = check_float("n_sigma", n_sigma, low=0.0, low_inclusive=False)
        self.register_buffer("mean", torch.tensor(1.0 / self.num_classes))
        self.register_buffer("variance", torch.tensor(1.0))

    @property
    def class_thresholds(self) -> torch.Tensor:
        """The running mean confidence, above which a prediction has weight 1 (the same for every class)."""
        return self.mean.expand(self.num_classes)

    def forward(self, probs: torch.Tensor, valid: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        confidence = probs.max(dim=1).values
        # E[c] and E[c^2] in float64: their difference, the variance, is small late in training
        moments, count = masked_mean(torch.stack([confidence, confidence * confidence], dim=1).double(), valid)
        mean = moments[0]
        variance = (moments[1] - mean * mean).clamp(min=0.0) * count / (count - 1).clamp(min=1)
        variance = variance.to(self.variance.dtype)
        mean = mean.to(self.mean.dtype)
        m, update = self.momentum, count > 1  # a tensor: no host synchronisation
        self.mean = torch.where(update, m * self.mean + (1 - m) * mean, self.mean)
        self.variance = torch.where(update, m * self.variance + (1 - m) * variance, self.variance)
        below = (confidence - self.mean.to(confidence.dtype)).clamp(max=0.0)
        width = 2 * self.variance.clamp(min=1e-12) / self.n_sigma**2
        return torch.where(valid, torch.exp(-below * below / width.to(confidence.dtype)), 0.0)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, momentum={self.momentum}, n_sigma={self.n_sigma}"
