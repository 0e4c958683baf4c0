"""Where pseudo-labels come from: the label-source slot of the pseudo term.

A label source turns the class probabilities of the pseudo-label sources (the weak view, a
teacher's predictions, or the unlabeled predictions themselves) into what the unsupervised loss
trains on: hard labels (Lee 2013, FixMatch), soft labels sharpened with a temperature
(UDA, FreeMatch with ``T < 1``), or either of them after distribution alignment (ReMixMatch,
SoftMatch). It also says which probabilities the policy and the regularisers see. Rows are
``(M, C)``: one per sample, or one per pixel of dense predictions.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from ._validation import check_float, check_instance
from .alignment import DistributionAlignment, sharpen

__all__ = ["AlignedLabels", "HardLabels", "LabelSource", "PseudoTargets", "SoftLabels"]


class PseudoTargets(NamedTuple):
    """What a :class:`LabelSource` returns for ``M`` prediction rows.

    Attributes:
        probs: ``(M, C)`` the probabilities the policy and the regularisers see.
        targets: what the unsupervised loss trains on: ``(M,)`` ``int64`` labels or ``(M, C)``
            class distributions.
        labels: ``(M,)`` the hard label of each row (for statistics such as ``pseudo_accuracy``).
    """

    probs: torch.Tensor
    targets: torch.Tensor
    labels: torch.Tensor


class LabelSource(nn.Module):
    """Base class of the label sources: ``source(probs, valid) -> PseudoTargets``.

    ``probs`` are ``(M, C)`` softmax probabilities of the pseudo-label sources (no gradient); rows
    where ``valid`` is False (non-finite logits or inputs, padding) must not update any statistic.

    .. versionadded:: 0.3.0
    """

    def forward(self, probs: torch.Tensor, valid: torch.Tensor) -> PseudoTargets:
        raise NotImplementedError


class HardLabels(LabelSource):
    """The argmax class as the pseudo-label (Lee 2013; FixMatch).

    Examples:
        >>> HardLabels()(torch.tensor([[0.7, 0.3], [0.4, 0.6]]), torch.tensor([True, True])).targets
        tensor([0, 1])

    .. versionadded:: 0.3.0
    """

    def forward(self, probs: torch.Tensor, valid: torch.Tensor) -> PseudoTargets:
        labels = probs.argmax(dim=1)
        return PseudoTargets(probs, labels, labels)


class SoftLabels(LabelSource):
    """The probabilities sharpened with a temperature (:func:`~ignite_pseudolabel.alignment.sharpen`) as targets.

    Args:
        temperature: ``T`` in (0, 1]: ``p^(1/T)`` renormalised (1 keeps the probabilities as they are).

    Examples:
        >>> out = SoftLabels(0.5)(torch.tensor([[0.6, 0.4]]), torch.tensor([True]))
        >>> out.targets, out.labels
        (tensor([[0.6923, 0.3077]]), tensor([0]))

    .. versionadded:: 0.3.0
    """

    def __init__(self, temperature: float) -> None:
        super().__init__()
        self.temperature = check_float("temperature", temperature, low=0.0, high=1.0, low_inclusive=False)

    def forward(self, probs: torch.Tensor, valid: torch.Tensor) -> PseudoTargets:
        return PseudoTargets(probs, sharpen(probs, self.temperature), probs.argmax(dim=1))

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"


class AlignedLabels(LabelSource):
    """Distribution alignment before another label source; the policy sees the aligned probabilities.

    With ``targets_from_aligned=False`` the targets come from the probabilities *before* alignment
    while the policy and the regularisers still see the aligned ones, as USB's SoftMatch does
    (its uniform alignment shapes the sample weights, not the labels).

    Args:
        alignment: e.g. :class:`~ignite_pseudolabel.DistributionAlignment`.
        labels: the label source applied after it (default :class:`HardLabels`).
        targets_from_aligned: take the targets from the aligned probabilities (default) or not.

    Examples:
        >>> from ignite_pseudolabel import DistributionAlignment
        >>> source = AlignedLabels(DistributionAlignment(2), targets_from_aligned=False)
        >>> out = source(torch.tensor([[0.9, 0.1], [0.7, 0.3]]), torch.tensor([True, True]))
        >>> out.probs.argmax(1).tolist(), out.targets.tolist()  # aligned beliefs, unaligned labels
        ([0, 1], [0, 0])

    .. versionadded:: 0.3.0
    """

    def __init__(self, alignment: DistributionAlignment, labels: LabelSource | None = None, *,
                 targets_from_aligned: bool = True) -> None:
        super().__init__()
        self.alignment = check_instance("alignment", alignment, DistributionAlignment)
        self.labels = HardLabels() if labels is None else check_instance("labels", labels, LabelSource)
        self.targets_from_aligned = bool(targets_from_aligned)

    def forward(self, probs: torch.Tensor, valid: torch.Tensor) -> PseudoTargets:
        aligned = self.alignment(probs, valid)
        return self.labels(aligned if self.targets_from_aligned else probs, valid)._replace(probs=aligned)

    def extra_repr(self) -> str:
        return f"targets_from_aligned={self.targets_from_aligned}"
