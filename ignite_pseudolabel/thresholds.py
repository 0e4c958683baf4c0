"""Which online pseudo-labels to use: fixed, curriculum (FlexMatch), self-adaptive (FreeMatch), relative (AdaMatch).

A threshold policy is an ``nn.Module`` called with the class probabilities of the unlabeled
predictions; it returns the mask of the predictions to use (or float weights, see
:mod:`ignite_pseudolabel.weighting`) and updates its statistics. Statistics
are buffers, so they travel with ``state_dict`` (checkpoint the :class:`PseudoLabelLoss` that holds
the policy) and move with ``.to(device)``; under ``ignite.distributed`` every update is reduced
across processes, so all ranks keep identical statistics and thresholds. Nothing is moved to the
host.
"""

from __future__ import annotations

import math

import ignite.distributed as idist
import torch
from torch import nn

from ._stats import masked_mean
from ._validation import check_choice, check_float, check_int, check_threshold

__all__ = ["FixedThreshold", "FlexMatchThreshold", "FreeMatchThreshold", "RelativeThreshold", "ThresholdPolicy"]


class ThresholdPolicy(nn.Module):
    """Base class of the threshold policies: decides which online pseudo-labels to use.

    Subclasses implement :meth:`forward` and :attr:`class_thresholds`.

    .. versionadded:: 0.2.0
    """

    #: whether the policy needs the samples' positions (``Views.sample_index``)
    needs_index = False
    #: whether the policy needs the class probabilities of the labeled rows (keyword ``labeled_probs``)
    needs_labeled = False
    #: what the policy is called in error messages
    role = "threshold policy"

    def forward(self, probs: torch.Tensor, valid: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """Returns the mask (or the weights) of the pseudo-labels to use and updates the statistics.

        Args:
            probs: ``(M, C)`` class probabilities of the unlabeled predictions (rows: samples, or
                elements of dense predictions).
            valid: ``(M,)`` bool, False for predictions with non-finite logits (never used, and left
                out of every statistic).
            index: ``(M,)`` positions of the samples in the unlabeled dataset, or ``None``.

        A policy that sets ``needs_labeled = True`` is also given ``labeled_probs=``, the ``(L, C)``
        class probabilities of the labeled rows of the same forward pass.

        Returns:
            ``(M,)`` bool mask, or float weights in [0, 1].

        .. versionchanged:: 0.3.0
            Float weights; ``labeled_probs``.
        """
        raise NotImplementedError

    @property
    def class_thresholds(self) -> torch.Tensor:
        """The current threshold of every class (for monitoring)."""
        raise NotImplementedError


class FixedThreshold(ThresholdPolicy):
    """Use a pseudo-label when its confidence is >= ``threshold`` (FixMatch: 0.95), in [0, 1].

    ``threshold=0`` uses every prediction with finite logits (as no threshold does).

    Examples:
        >>> policy = FixedThreshold(0.9, num_classes=2)
        >>> policy(torch.tensor([[0.95, 0.05], [0.6, 0.4]]), torch.tensor([True, True])).tolist()
        [True, False]

    .. versionadded:: 0.2.0
    .. versionchanged:: 0.3.0
        ``threshold=0`` is accepted.
    """

    def __init__(self, threshold: float = 0.95, num_classes: int | None = None) -> None:
        super().__init__()
        self.threshold = check_threshold("threshold", threshold, allow_zero=True)
        self.num_classes = None if num_classes is None else check_int("num_classes", num_classes, minimum=2)

    def forward(self, probs: torch.Tensor, valid: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        return valid & (probs.max(dim=1).values >= self.threshold)

    @property
    def class_thresholds(self) -> torch.Tensor:
        return torch.full((self.num_classes or 1,), self.threshold)

    def extra_repr(self) -> str:
        return f"threshold={self.threshold}"


class FlexMatchThreshold(ThresholdPolicy):
    """FlexMatch's class-wise curriculum thresholds (Zhang et al., 2021).

    Every unlabeled sample remembers the class it was last predicted with confidence >= ``threshold``
    (``selected``, -1 before). The learning effect of class ``c`` is
    ``sigma_c = #samples selected as c / max(#selected per class, #never selected if warmup)``, and
    the threshold of class ``c`` is ``threshold * M(sigma_c)`` with the convex mapping
    ``M(x) = x / (2 - x)`` (or linear ``x``, or concave ``log(x + 1) / log 2``). Hard-to-learn classes
    get lower thresholds so that they receive pseudo-labels early. As in USB, the batch is masked with
    the thresholds of the previous steps (all 0 at the start, so the first batch uses every
    prediction), then updates ``selected`` and the learning effects. When a step holds a sample
    several times (a sampler with replacement, or the same sample on several ranks), it is selected
    if any copy is confident, with the class of the most confident copy (the smallest class among
    equally confident ones): the result does not depend on the order of the copies. Needs the
    samples' positions: use :class:`~ignite_pseudolabel.WeakStrongViews` (or any unlabeled batch
    carrying ``Views.sample_index``). Under ``ignite.distributed`` the positions, classes and
    confidences are all-gathered each step, so every rank holds the same ``selected`` (all ranks must
    use equal batch sizes, as ``DistributedSampler`` gives).

    Args:
        threshold: the upper threshold tau (FlexMatch: 0.95), in (0, 1].
        num_classes: number of classes.
        num_unlabeled: size of the unlabeled dataset.
        warmup: count never-selected samples in the normaliser (FlexMatch's threshold warm-up).
        mapping: ``"convex"`` (the paper's default), ``"linear"`` or ``"concave"``.

    Examples:
        >>> policy = FlexMatchThreshold(0.9, num_classes=2, num_unlabeled=3)
        >>> probs = torch.tensor([[0.95, 0.05], [0.97, 0.03], [0.6, 0.4]])
        >>> valid, index = torch.tensor([True, True, True]), torch.tensor([0, 1, 2])
        >>> policy(probs, valid, index).tolist()  # thresholds of no step yet: all 0
        [True, True, True]
        >>> policy.selected, policy.class_thresholds
        (tensor([ 0,  0, -1]), tensor([0.9000, 0.0000]))
        >>> policy(probs, valid, index).tolist()
        [True, True, False]

    .. versionadded:: 0.2.0
    .. versionchanged:: 0.3.0
        The mask uses the thresholds before the batch's update (as USB does); duplicated positions
        in a step update ``selected`` deterministically.
    """

    needs_index = True
    selected: torch.Tensor
    learning_effect: torch.Tensor

    def __init__(self, threshold: float = 0.95, *, num_classes: int, num_unlabeled: int, warmup: bool = True,
                 mapping: str = "convex") -> None:
        super().__init__()
        self.threshold = check_threshold("threshold", threshold)
        self.num_classes = check_int("num_classes", num_classes, minimum=2)
        num_unlabeled = check_int("num_unlabeled", num_unlabeled, minimum=1)
        self.warmup = bool(warmup)
        self.mapping = check_choice("mapping", mapping, ("convex", "linear", "concave"))
        self.register_buffer("selected", torch.full((num_unlabeled,), -1, dtype=torch.int64))
        self.register_buffer("learning_effect", torch.zeros(self.num_classes))

    def _map(self, x: torch.Tensor) -> torch.Tensor:
        if self.mapping == "convex":
            return x / (2 - x)
        if self.mapping == "concave":
            return torch.log1p(x) / math.log(2.0)  # a Python constant: no tensor made (or copied) per step
        return x

    @property
    def class_thresholds(self) -> torch.Tensor:
        return self.threshold * self._map(self.learning_effect)

    def forward(self, probs: torch.Tensor, valid: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        if index is None:
            raise ValueError("FlexMatchThreshold needs the positions of the unlabeled samples: load them with "
                             "WeakStrongViews (batches of Views carry .sample_index)")
        if index.shape[0] != probs.shape[0]:
            raise ValueError(f"FlexMatchThreshold works on (N, C) predictions, one per sample; given {probs.shape[0]} "
                             f"predictions for {index.shape[0]} samples (dense predictions are not supported)")
        confidence, labels = probs.max(dim=1)
        # Mask with the thresholds of the previous steps (USB), then update the statistics.
        mask = valid & (confidence >= self.class_thresholds.to(probs.dtype)[labels])
        num_classes, num_unlabeled = self.num_classes, self.selected.numel()
        code = index.to(self.selected.device, torch.int64) * num_classes + labels.to(self.selected.device)
        score = torch.where(valid & (confidence >= self.threshold), confidence, -1.0).to(self.selected.device)
        if idist.get_world_size() > 1:
            code, score = idist.all_gather(code), idist.all_gather(score)  # type: ignore[assignment]
        index, labels = code // num_classes, code % num_classes
        # Per position: the highest confidence of its confident copies (-1: none), then the smallest class
        # among the copies with that confidence. Both reductions are independent of the order of the copies.
        best = torch.full((num_unlabeled,), -1.0, dtype=score.dtype, device=score.device)
        best.scatter_reduce_(0, index, score, reduce="amax")
        winner = (score >= 0) & (score == best[index])
        chosen = torch.full_like(self.selected, num_classes)
        chosen.scatter_reduce_(0, index, torch.where(winner, labels, num_classes), reduce="amin")
        self.selected.copy_(torch.where(chosen < num_classes, chosen, self.selected))
        # scatter_add into a fixed size: unlike bincount it does not read the maximum back to the host
        counts = torch.zeros(num_classes + 1, dtype=torch.int64, device=self.selected.device)
        counts.scatter_add_(0, self.selected + 1, torch.ones_like(self.selected))
        normaliser = counts.max() if self.warmup else counts[1:].max()
        self.learning_effect = counts[1:].to(self.learning_effect.dtype) / normaliser.clamp(min=1)
        return mask

    def extra_repr(self) -> str:
        return (f"threshold={self.threshold}, num_classes={self.num_classes}, "
                f"num_unlabeled={self.selected.numel()}, warmup={self.warmup}, mapping={self.mapping!r}")


class FreeMatchThreshold(ThresholdPolicy):
    """FreeMatch's self-adaptive thresholds (Wang et al., 2023).

    A global threshold ``tau`` is the exponential moving average of the mean confidence of the
    unlabeled predictions, and a class-wise factor the moving average of the mean class
    probabilities ``p``; the threshold of class ``c`` is ``tau * p_c / max(p)``. Both start at
    ``1 / num_classes``, so early training uses many (low-confidence) pseudo-labels and the
    thresholds rise as the model grows confident. Works on dense predictions too. Batch means are
    averaged across processes under ``ignite.distributed``.

    Args:
        num_classes: number of classes.
        momentum: EMA momentum lambda (FreeMatch: 0.999), in [0, 1).

    .. versionadded:: 0.2.0
    """

    global_threshold: torch.Tensor
    class_probabilities: torch.Tensor

    def __init__(self, num_classes: int, momentum: float = 0.999) -> None:
        super().__init__()
        self.num_classes = check_int("num_classes", num_classes, minimum=2)
        self.momentum = check_float("momentum", momentum, low=0.0, high=1.0, high_inclusive=False)
        self.register_buffer("global_threshold", torch.tensor(1.0 / self.num_classes))
        self.register_buffer("class_probabilities", torch.full((self.num_classes,), 1.0 / self.num_classes))

    @property
    def class_thresholds(self) -> torch.Tensor:
        return self.global_threshold * self.class_probabilities / self.class_probabilities.max()

    def forward(self, probs: torch.Tensor, valid: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        confidence, labels = probs.max(dim=1)
        m = self.momentum
        batch_confidence, count = masked_mean(confidence.unsqueeze(1), valid)
        batch_confidence = batch_confidence.squeeze(0)
        batch_probabilities, _ = masked_mean(probs, valid)
        any_valid = count > 0  # over all processes, so that every rank updates alike
        self.global_threshold = torch.where(any_valid, m * self.global_threshold + (1 - m) * batch_confidence,
                                            self.global_threshold)
        self.class_probabilities = torch.where(any_valid, m * self.class_probabilities + (1 - m) * batch_probabilities,
                                               self.class_probabilities)
        return valid & (confidence >= self.class_thresholds.to(probs.dtype)[labels])

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, momentum={self.momentum}"


class RelativeThreshold(ThresholdPolicy):
    """AdaMatch's relative threshold: ``threshold`` times the mean labeled confidence (Berthelot et al., 2022).

    The cut-off follows the model's confidence on data it knows: early in training, or under a
    distribution shift between labeled and unlabeled data, it stays low; as the labeled
    predictions grow confident it rises towards ``threshold``. The mean is over the labeled rows of
    the same forward pass (the weak view of the labeled batch), on each process (as USB computes
    it); nothing is kept between steps except the last cut-off, for monitoring.

    Args:
        threshold: the relative threshold tau (AdaMatch: 0.9), in (0, 1].

    Examples:
        >>> policy = RelativeThreshold(0.9)
        >>> labeled = torch.tensor([[1.0, 0.0], [0.6, 0.4]])  # mean confidence 0.8: cut-off 0.72
        >>> policy(torch.tensor([[0.75, 0.25], [0.3, 0.7]]), torch.tensor([True, True]), labeled_probs=labeled)
        tensor([ True, False])

    .. versionadded:: 0.3.0
    """

    needs_labeled = True
    cutoff: torch.Tensor

    def __init__(self, threshold: float = 0.9) -> None:
        super().__init__()
        self.threshold = check_threshold("threshold", threshold)
        self.register_buffer("cutoff", torch.tensor(0.0), persistent=False)

    @property
    def class_thresholds(self) -> torch.Tensor:
        """The last cut-off (the same for every class)."""
        return self.cutoff.view(1)

    def forward(self, probs: torch.Tensor, valid: torch.Tensor, index: torch.Tensor | None = None, *,
                labeled_probs: torch.Tensor | None = None) -> torch.Tensor:
        if labeled_probs is None:
            raise ValueError("RelativeThreshold needs the class probabilities of the labeled rows (labeled_probs)")
        self.cutoff = self.threshold * labeled_probs.max(dim=1).values.mean()
        return valid & (probs.max(dim=1).values >= self.cutoff.to(probs.dtype))

    def extra_repr(self) -> str:
        return f"threshold={self.threshold}"
