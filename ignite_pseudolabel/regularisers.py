"""Regularisers of the pseudo term: FreeMatch's self-adaptive fairness.

A regulariser is a module called with the pseudo-label sources' probabilities, their validity, the
student's logits (as ``(M, C)`` rows) and the mask of the rows that use their pseudo-label; it
returns an unweighted scalar term. It declares ``weight`` (the term's weight in the pseudo term) and
``component`` (the name under which the loss publishes it on ``engine.state``). The loss adds
``weight * term`` to the pseudo term.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from ._stats import masked_mean
from ._validation import check_float, check_int

__all__ = ["SelfAdaptiveFairness", "self_adaptive_fairness"]


def self_adaptive_fairness(
    logits: torch.Tensor, mask: torch.Tensor, class_probabilities: torch.Tensor, label_histogram: torch.Tensor
) -> torch.Tensor:
    """FreeMatch's self-adaptive fairness term ``L_f = -H(SumNorm(p~ / h~), SumNorm(p_bar / h_bar))``.

    ``p~`` and ``h~`` are the moving averages of the mean class probabilities and of the histogram
    of the predicted classes on the (weak) unlabeled predictions; ``p_bar`` and ``h_bar`` are the mean
    probabilities and the histogram of the argmax of ``logits`` (the strong view's predictions) over
    the rows where ``mask`` is True. ``SumNorm`` normalises to sum 1 and ``H(a, b) = -sum_c a_c log b_c``;
    a class with an empty histogram bin gets weight 0 (as in USB, which adds ``1e-12`` inside the
    log). Minimising ``L_f`` pushes the batch's mean prediction towards the classes the model
    predicts rarely. Gradients flow through ``p_bar`` only. No host synchronisation: without any
    masked row the term is 0.

    Args:
        logits: ``(M, C)`` logits of the predictions trained on the pseudo-labels (rows with a False
            ``mask`` may be non-finite).
        mask: ``(M,)`` bool, the rows that use their pseudo-label.
        class_probabilities: ``(C,)`` moving average ``p~``.
        label_histogram: ``(C,)`` moving average ``h~``.

    Returns:
        A scalar tensor.

    Examples:
        >>> logits = torch.tensor([[0.8, 0.2], [0.3, 0.7], [0.1, 0.9]]).log()
        >>> value = self_adaptive_fairness(logits, torch.tensor([True, True, False]),
        ...                                torch.tensor([0.6, 0.4]), torch.tensor([0.5, 0.5]))
        >>> torch.allclose(value, 0.6 * torch.tensor(0.55).log() + 0.4 * torch.tensor(0.45).log())
        True
    """
    if logits.ndim != 2 or mask.shape != logits.shape[:1]:
        raise ValueError(f"Expected (M, C) logits and an (M,) mask, but given shapes {tuple(logits.shape)} and "
                         f"{tuple(mask.shape)}")
    num_classes = logits.shape[1]
    keep = mask.unsqueeze(1)
    probs = torch.softmax(torch.where(keep, logits, 0.0).float(), dim=1)
    weight = mask.to(probs.dtype)
    count = weight.sum()
    mean_probs = (probs * weight.unsqueeze(1)).sum(0) / count.clamp(min=1)
    one_hot = F.one_hot(probs.detach().argmax(dim=1), num_classes).to(probs.dtype)
    histogram = (one_hot * weight.unsqueeze(1)).sum(0) / count.clamp(min=1)

    def sum_norm(values: torch.Tensor, hist: torch.Tensor) -> torch.Tensor:
        scaled = values * torch.where(hist > 0, 1.0 / hist.clamp(min=1e-12), 0.0)
        return scaled / scaled.sum().clamp(min=1e-12)

    model_side = sum_norm(class_probabilities.to(probs.dtype), label_histogram.to(probs.dtype)).detach()
    batch_side = sum_norm(mean_probs, histogram)
    value = (model_side * torch.log(batch_side + 1e-12)).sum()
    return torch.where(count > 0, value, 0.0)


class SelfAdaptiveFairness(torch.nn.Module):
    """FreeMatch's self-adaptive fairness term (Wang et al., 2023), for ``PseudoLabelLoss(fairness=...)``.

    Keeps the moving averages of the mean class probabilities and of the histogram of the predicted
    classes of the pseudo-label sources (the weak view; after distribution alignment, if any), both
    starting at ``1 / num_classes`` and updated before the term is computed (as in USB), and returns
    :func:`.self_adaptive_fairness` of the predictions trained on the pseudo-labels (the strong view)
    over the rows that use their pseudo-label. The loss adds ``alpha * weight * L_f``: with
    ``alpha = 1`` (FreeMatch's unlabeled weight) ``weight`` is FreeMatch's ``lambda_f``. The moving
    averages are buffers (saved in ``state_dict``), updated with batch means averaged across processes
    under ``ignite.distributed``; the term itself, like the others, is computed on each process's batch.

    Args:
        num_classes: number of classes.
        weight: the weight ``lambda_f`` of the term, >= 0. The default, 0.001, is what USB's FreeMatch
            configurations use (``ent_loss_ratio`` in ``config/classic_cv/freematch/``, CIFAR-10/100 and
            STL-10 alike); 0.01 (the default of USB's command line, and this class's earlier default)
            is one argument away: ``weight=0.01``.
        momentum: EMA momentum of the statistics (FreeMatch: 0.999, as its thresholds'), in [0, 1).

    Examples:
        >>> fairness = SelfAdaptiveFairness(2, momentum=0.0)
        >>> weak = torch.tensor([[0.9, 0.1], [0.6, 0.4]])
        >>> strong = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
        >>> value = fairness(weak, torch.tensor([True, True]), strong, torch.tensor([True, True]))
        >>> fairness.class_probabilities, fairness.label_histogram
        (tensor([0.7500, 0.2500]), tensor([1., 0.]))
        >>> value  # log of the strong view's mean probability of class 0, the only one in the histogram
        tensor(-0.5536)

    .. versionadded:: 0.3.0
    """

    #: the name of the term on ``engine.state`` and in the loss's components
    component: ClassVar[str] = "fairness_loss"
    #: what the term is called in error messages
    role: ClassVar[str] = "fairness"
    class_probabilities: torch.Tensor
    label_histogram: torch.Tensor

    def __init__(self, num_classes: int, weight: float = 0.001, momentum: float = 0.999) -> None:
        super().__init__()
        self.num_classes = check_int("num_classes", num_classes, minimum=2)
        self.weight = check_float("weight", weight, low=0.0)
        self.momentum = check_float("momentum", momentum, low=0.0, high=1.0, high_inclusive=False)
        self.register_buffer("class_probabilities", torch.full((self.num_classes,), 1.0 / self.num_classes))
        self.register_buffer("label_histogram", torch.full((self.num_classes,), 1.0 / self.num_classes))

    def forward(
        self, probs: torch.Tensor, valid: torch.Tensor, logits: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Updates the statistics with the sources and returns the unweighted term.

        Args:
            probs: ``(M, C)`` class probabilities of the pseudo-label sources.
            valid: ``(M,)`` bool, False for sources with non-finite logits (left out of the statistics).
            logits: ``(M, C)`` logits of the predictions trained on the pseudo-labels.
            mask: ``(M,)`` bool, the rows that use their pseudo-label.
        """
        m = self.momentum
        one_hot = F.one_hot(probs.argmax(dim=1), self.num_classes).to(probs.dtype)
        means, count = masked_mean(torch.cat([probs, one_hot], dim=1), valid)  # one reduction for both
        batch_probabilities, batch_histogram = means.split(self.num_classes)
        any_valid = count > 0
        self.class_probabilities = torch.where(
            any_valid, m * self.class_probabilities + (1 - m) * batch_probabilities, self.class_probabilities)
        self.label_histogram = torch.where(
            any_valid, m * self.label_histogram + (1 - m) * batch_histogram, self.label_histogram)
        return self_adaptive_fairness(logits, mask, self.class_probabilities, self.label_histogram)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, weight={self.weight}, momentum={self.momentum}"
