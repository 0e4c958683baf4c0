"""Which online pseudo-labels to use: fixed, class-wise curriculum (FlexMatch) and self-adaptive (FreeMatch) thresholds.

A threshold policy is an ``nn.Module`` called with the class probabilities of the unlabeled
predictions; it returns the mask of the predictions to use and updates its statistics. Statistics
are buffers, so they travel with ``state_dict`` (checkpoint the :class:`PseudoLabelLoss` that holds
the policy) and move with ``.to(device)``; under ``ignite.distributed`` every update is reduced
across processes, so all ranks keep identical statistics and thresholds. Nothing is moved to the
host.
"""

from __future__ import annotations

import ignite.distributed as idist
import torch
from torch import nn

from ._validation import check_choice, check_float, check_int, check_threshold

__all__ = ["FixedThreshold", "FlexMatchThreshold", "FreeMatchThreshold", "ThresholdPolicy"]


def _masked_mean(values: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean over the valid rows of ``values`` (rows x ...) of all processes, and their number; no host sync."""
    weight = valid.to(values.dtype).view(-1, *([1] * (values.ndim - 1)))
    total = torch.stack([(values * weight).sum(0).flatten(), weight.sum().expand(values[0].numel())])
    if idist.get_world_size() > 1:
        total = idist.all_reduce(total)  # type: ignore[assignment]
    return (total[0] / total[1].clamp(min=1)).view(values.shape[1:]), total[1, 0]


class ThresholdPolicy(nn.Module):
    """Base class of the threshold policies: decides which online pseudo-labels to use.

    Subclasses implement :meth:`forward` and :attr:`class_thresholds`.

    .. versionadded:: 0.2.0
    """

    #: whether the policy needs the samples' positions (``Views.sample_index``)
    needs_index = False

    def forward(self, probs: torch.Tensor, valid: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """Returns the mask of the pseudo-labels to use and updates the statistics.

        Args:
            probs: ``(M, C)`` class probabilities of the unlabeled predictions (rows: samples, or
                elements of dense predictions).
            valid: ``(M,)`` bool, False for predictions with non-finite logits (never used, and left
                out of every statistic).
            index: ``(M,)`` positions of the samples in the unlabeled dataset, or ``None``.

        Returns:
            ``(M,)`` bool mask.
        """
        raise NotImplementedError

    @property
    def class_thresholds(self) -> torch.Tensor:
        """The current threshold of every class (for monitoring)."""
        raise NotImplementedError


class FixedThreshold(ThresholdPolicy):
    """Use a pseudo-label when its confidence is >= ``threshold`` (FixMatch: 0.95).

    Examples:
        >>> policy = FixedThreshold(0.9, num_classes=2)
        >>> policy(torch.tensor([[0.95, 0.05], [0.6, 0.4]]), torch.tensor([True, True])).tolist()
        [True, False]

    .. versionadded:: 0.2.0
    """

    def __init__(self, threshold: float = 0.95, num_classes: int | None = None) -> None:
        super().__init__()
        self.threshold = check_threshold("threshold", threshold)
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
    get lower thresholds so that they receive pseudo-labels early. The batch updates ``selected``
    first (as USB does), then the mask uses the new thresholds. Needs the samples' positions: use
    :class:`~ignite_pseudolabel.WeakStrongViews` (or any unlabeled batch carrying ``Views.sample_index``).
    Under ``ignite.distributed`` the positions and classes are all-gathered each step, so every rank
    holds the same ``selected`` (all ranks must use equal batch sizes, as ``DistributedSampler`` gives).

    Args:
        threshold: the upper threshold tau (FlexMatch: 0.95), in (0, 1].
        num_classes: number of classes.
        num_unlabeled: size of the unlabeled dataset.
        warmup: count never-selected samples in the normaliser (FlexMatch's threshold warm-up).
        mapping: ``"convex"`` (the paper's default), ``"linear"`` or ``"concave"``.

    .. versionadded:: 0.2.0
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
            return torch.log(x + 1) / torch.log(torch.tensor(2.0, device=x.device))
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
        index = index.to(self.selected.device)
        confident = valid & (confidence >= self.threshold)
        update = torch.where(confident, labels, torch.full_like(labels, -2))  # -2: no update
        if idist.get_world_size() > 1:
            index, update = idist.all_gather(index), idist.all_gather(update)  # type: ignore[assignment]
        keep = update >= 0
        self.selected.index_put_((index,), torch.where(keep, update, self.selected[index]))
        # scatter_add into a fixed size: unlike bincount it does not read the maximum back to the host
        counts = torch.zeros(self.num_classes + 1, dtype=torch.int64, device=self.selected.device)
        counts.scatter_add_(0, self.selected + 1, torch.ones_like(self.selected))
        normaliser = counts.max() if self.warmup else counts[1:].max()
        self.learning_effect = counts[1:].to(probs.dtype) / normaliser.clamp(min=1)
        return valid & (confidence >= self.class_thresholds.to(probs.dtype)[labels])

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
        batch_confidence, count = _masked_mean(confidence.unsqueeze(1), valid)
        batch_confidence = batch_confidence.squeeze(0)
        batch_probabilities, _ = _masked_mean(probs, valid)
        any_valid = count > 0  # over all processes, so that every rank updates alike
        self.global_threshold = torch.where(any_valid, m * self.global_threshold + (1 - m) * batch_confidence,
                                            self.global_threshold)
        self.class_probabilities = torch.where(any_valid, m * self.class_probabilities + (1 - m) * batch_probabilities,
                                               self.class_probabilities)
        return valid & (confidence >= self.class_thresholds.to(probs.dtype)[labels])

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, momentum={self.momentum}"
