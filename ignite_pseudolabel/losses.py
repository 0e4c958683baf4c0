"""The semi-supervised loss ``L_labeled + alpha * L_pseudo`` and its pure building blocks."""

from __future__ import annotations

import warnings
from typing import Any, Callable, ClassVar

import ignite.distributed as idist
import torch
import torch.nn.functional as F
from ignite.engine import Engine, Events

from ._stats import confident_labels, finite_softmax, masked_mean
from ._validation import check_attach, check_float, check_identifier, check_int, claim_state_attributes, optional_float
from .alignment import DistributionAlignment, sharpen
from .batch import SemiSupervisedBatch, SemiSupervisedTarget, prepare_semi_supervised_batch
from .thresholds import FixedThreshold, ThresholdPolicy

__all__ = [
    "PseudoLabelLoss",
    "SelfAdaptiveFairness",
    "hard_pseudo_labels",
    "masked_cross_entropy",
    "masked_soft_cross_entropy",
    "self_adaptive_fairness",
]


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


def _broadcast_valid(valid: torch.Tensor | None, shape: tuple[int, ...]) -> torch.Tensor | None:
    """``valid``, ``(N,)`` or ``(N, d1, ...)``, expanded to the predictions' ``shape``, ``(N, d1, ...)``."""
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


def _masked_average(per_prediction: torch.Tensor, keep: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """The sum of the kept values over the number of predictions (of the valid ones, when given)."""
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
        mask: ``(N, d1, ...)`` boolean mask of the predictions to use.
        valid: ``(N,)`` (per sample) or ``(N, d1, ...)`` boolean mask of the predictions that count
            at all (default: all), e.g. :attr:`SemiSupervisedTarget.unlabeled_valid
            <ignite_pseudolabel.batch.SemiSupervisedTarget.unlabeled_valid>`.

    Returns:
        A scalar tensor (zero when ``N == 0`` or no prediction is valid).

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
    valid = _broadcast_valid(valid, mask.shape)
    keep = mask if valid is None else mask & valid
    per_prediction = F.cross_entropy(torch.where(keep.unsqueeze(1), logits, 0.0), labels, reduction="none")
    return _masked_average(per_prediction, keep, valid)  # finite everywhere: masked-out rows saw zero logits


def masked_soft_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, *, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Cross-entropy against soft targets (class probabilities), averaged like :func:`.masked_cross_entropy`.

    Args:
        logits: ``(N, C, d1, ...)`` logits.
        targets: ``(N, C, d1, ...)`` target probabilities (e.g. sharpened pseudo-labels).
        mask: ``(N, d1, ...)`` boolean mask of the predictions to use.
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
    valid = _broadcast_valid(valid, mask.shape)
    keep = mask if valid is None else mask & valid
    log_probs = torch.log_softmax(torch.where(keep.unsqueeze(1), logits, 0.0).float(), dim=1)
    per_prediction = -(torch.where(keep.unsqueeze(1), targets, 0.0) * log_probs).sum(dim=1)
    return _masked_average(per_prediction, keep, valid)


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
        weight: the weight ``lambda_f`` of the term, >= 0 (FreeMatch: 0.01 on CIFAR, 0.001 on some
            other data sets).
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

    class_probabilities: torch.Tensor
    label_histogram: torch.Tensor

    def __init__(self, num_classes: int, weight: float = 0.01, momentum: float = 0.999) -> None:
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


class PseudoLabelLoss(torch.nn.Module):
    """``L_labeled + alpha * L_pseudo`` for a stock ``create_supervised_trainer``.

    Use it as the trainer's ``loss_fn`` and its :meth:`prepare_batch` as the trainer's
    ``prepare_batch``; run the trainer on a :class:`~ignite_pseudolabel.SemiSupervisedLoader`. The
    inputs of the labeled batch and of the unlabeled (or pseudo-labeled) batch go through the model in
    one forward pass; the loss splits the predictions again:

    * online, Lee 2013 (the loader has ``unlabeled=`` inputs): pseudo-labels are the detached argmax
      of the unlabeled predictions of this same forward pass;
    * online, FixMatch (``unlabeled=`` batches of :class:`~ignite_pseudolabel.Views` from
      :class:`~ignite_pseudolabel.WeakStrongViews`): pseudo-labels come from the weak view, the loss
      trains the prediction on the strong view;
    * with a ``teacher`` (e.g. ``EMAHandler(model).ema_model``), the teacher predicts the (weak)
      unlabeled inputs instead and only the student's inputs go through the model;
    * mined (the loader has ``pseudo=``): the pseudo term is the cross-entropy against the mined
      pseudo-labels.

    Online pseudo-labels go through a pipeline of options: class probabilities of the source
    predictions -> optional :class:`~ignite_pseudolabel.DistributionAlignment` -> a threshold policy
    (a fixed ``threshold``, or :class:`~ignite_pseudolabel.FlexMatchThreshold`,
    :class:`~ignite_pseudolabel.FreeMatchThreshold`) deciding which to use -> hard labels (argmax)
    or, with ``temperature``, soft labels (sharpened probabilities). The pseudo term is averaged over
    all unlabeled predictions, the unused ones contributing 0 (:func:`.masked_cross_entropy`). With
    ``fairness`` (:class:`~ignite_pseudolabel.SelfAdaptiveFairness`, FreeMatch), the pseudo term is
    ``L_u + weight * L_f``, ``L_f`` being computed on the used predictions. Dense
    logits ``(N, C, d1, ...)`` get a pseudo-label and a mask entry per element. A prediction with a
    non-finite logit (in the source of the pseudo-label or in the prediction trained on it, or among
    the mined rows) is never used, and non-finite sources never enter the statistics. Unlabeled and
    pseudo-labeled samples whose inputs held a NaN or an infinity (zeroed by :meth:`prepare_batch`
    before the forward pass, and False in the target's ``unlabeled_valid``) are left out
    altogether: never used, never in the statistics, and not counted in the average of the pseudo
    term, which is over the remaining predictions.

    ``alpha`` is read from ``engine.state.alpha`` (set by :class:`~ignite_pseudolabel.AlphaRamp`) at
    every call, unless a constant is given. While alpha is 0, :meth:`prepare_batch` leaves the second
    batch out, so the warm-up costs what supervised training costs and trains exactly like it.

    After :meth:`attach`, every iteration publishes detached scalar tensors on ``engine.state`` (no
    host synchronisation; loggers convert them when they log): ``supervised_loss``, ``pseudo_loss``,
    ``pseudo_mask_rate`` (the fraction of unlabeled predictions used; for mined pseudo-labels the
    fraction with finite inputs and predictions, normally 1; 0 when the batch had none),
    ``pseudo_accuracy`` (accuracy of the used online pseudo-labels against ``held_back_targets``,
    when given, or per element against the target's ``unlabeled_targets``; else None) and
    ``pseudo_non_finite_inputs`` (the number of unlabeled or pseudo-labeled samples of the batch
    left out because their inputs were not finite, summed over processes; normally 0); with
    ``fairness``, also ``fairness_loss`` (the unweighted ``L_f``; 0 for mined pseudo-labels or
    without unlabeled rows). At the end of the first epoch in which
    ``pseudo_non_finite_inputs`` was not 0, a ``RuntimeWarning`` says how many samples were left
    out (once per loss; checking costs one host synchronisation per epoch until then).

    The loss is an ``nn.Module``: the statistics of its threshold policy, alignment and fairness term
    are buffers in its ``state_dict``; include the loss in your checkpoint to resume them.

    Args:
        threshold: online pseudo-labels only: a minimum softmax confidence in [0, 1] (``None`` or 0:
            use all, as Lee 2013 does), or a :class:`~ignite_pseudolabel.ThresholdPolicy`.
        alpha: a constant weight instead of reading ``engine.state.<alpha_name>``. A number >= 0.
        supervised_loss: loss of the labeled rows, called as ``fn(logits, labels)`` (default
            cross-entropy; pass e.g. ``nn.CrossEntropyLoss(ignore_index=255)`` for segmentation).
        temperature: soft pseudo-labels sharpened with this temperature in (0, 1] (``None``: hard labels).
        alignment: a :class:`~ignite_pseudolabel.DistributionAlignment` applied to the probabilities
            before thresholding.
        fairness: a :class:`~ignite_pseudolabel.SelfAdaptiveFairness` term added to the online pseudo
            term with its ``weight`` (``None``: none, the default).
        teacher: a model producing the pseudo-labels (called without gradients, in its current mode;
            an ``EMAHandler``'s ``ema_model`` is in eval mode).
        views: makes the weak and strong views of raw unlabeled batches on the trainer's device (e.g.
            :class:`~ignite_pseudolabel.batch_views.BatchViews`), in :meth:`prepare_batch`; ``None``:
            the batches are used as they come.
        held_back_targets: the true labels of the unlabeled dataset, indexed by ``Views.sample_index``, for
            monitoring only (benchmarks).
        alpha_name: the ``engine.state`` attribute holding alpha (default ``"alpha"``).
        skip_unlabeled_when_alpha_is_zero: leave the second batch out of the forward pass while alpha
            is 0 (default ``True``).

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> from ignite.engine import create_supervised_trainer
        >>> from ignite_pseudolabel import AlphaRamp, SemiSupervisedLoader
        >>> _ = torch.manual_seed(0)
        >>> model = nn.Linear(2, 3)
        >>> loss = PseudoLabelLoss()
        >>> trainer = create_supervised_trainer(
        ...     model, torch.optim.SGD(model.parameters(), lr=0.1), loss, prepare_batch=loss.prepare_batch)
        >>> loss.attach(trainer)
        >>> AlphaRamp(t1=1, t2=2, alpha_f=3.0).attach(trainer)
        >>> labeled = DataLoader(TensorDataset(torch.randn(8, 2), torch.randint(0, 3, (8,))), batch_size=4)
        >>> unlabeled = DataLoader(torch.randn(32, 2), batch_size=8, shuffle=True)
        >>> state = trainer.run(SemiSupervisedLoader(labeled, unlabeled=unlabeled), max_epochs=3)
        >>> state.alpha, float(state.pseudo_mask_rate)
        (3.0, 1.0)

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
        Weak/strong views, threshold policies, distribution alignment, soft labels, teacher,
        ``pseudo_accuracy``.

    .. versionchanged:: 0.3.0
        ``fairness`` (FreeMatch's self-adaptive fairness) and the ``fairness_loss`` component;
        :attr:`state_attributes`; samples with non-finite inputs are left out and counted
        (``pseudo_non_finite_inputs``); ``threshold=0`` is accepted; ``views`` (batched weak and
        strong views made in :meth:`prepare_batch`).
    """

    #: The components that :meth:`attach` publishes on ``engine.state`` after every iteration.
    component_names: ClassVar[tuple[str, ...]] = ("supervised_loss", "pseudo_loss", "pseudo_mask_rate",
                                                  "pseudo_accuracy", "pseudo_non_finite_inputs")
    #: The component published too when the loss has a :class:`SelfAdaptiveFairness` term.
    fairness_component: ClassVar[str] = "fairness_loss"

    def __init__(
        self,
        threshold: float | ThresholdPolicy | None = None,
        *,
        alpha: float | None = None,
        supervised_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        temperature: float | None = None,
        alignment: DistributionAlignment | None = None,
        fairness: SelfAdaptiveFairness | None = None,
        teacher: torch.nn.Module | None = None,
        views: Callable[[Any], Any] | None = None,
        held_back_targets: torch.Tensor | None = None,
        alpha_name: str = "alpha",
        skip_unlabeled_when_alpha_is_zero: bool = True,
    ) -> None:
        super().__init__()
        if threshold is None or isinstance(threshold, ThresholdPolicy):
            self.policy = threshold
        else:
            self.policy = FixedThreshold(threshold)
        self.alpha = optional_float("alpha", alpha, low=0.0)
        if supervised_loss is not None and not callable(supervised_loss):
            raise TypeError(f"Argument supervised_loss should be callable, but given {type(supervised_loss).__name__}")
        self.supervised_loss = supervised_loss if supervised_loss is not None else F.cross_entropy
        self.temperature = optional_float("temperature", temperature, low=0.0, high=1.0, low_inclusive=False)
        if alignment is not None and not isinstance(alignment, DistributionAlignment):
            raise TypeError("Argument alignment should be a DistributionAlignment, but given "
                            f"{type(alignment).__name__}")
        self.alignment = alignment
        if fairness is not None and not isinstance(fairness, SelfAdaptiveFairness):
            raise TypeError("Argument fairness should be a SelfAdaptiveFairness, but given "
                            f"{type(fairness).__name__}")
        self.fairness = fairness
        if teacher is not None and not callable(teacher):
            raise TypeError(f"Argument teacher should be a model (callable), but given {type(teacher).__name__}")
        # Kept out of the registered submodules: the teacher is saved by whoever owns it (e.g. EMAHandler).
        self.__dict__["teacher"] = teacher
        if views is not None and not (callable(views) and callable(getattr(views, "weak", None))):
            raise TypeError(f"Argument views should be a callable with a weak method (e.g. BatchViews), but given "
                            f"{type(views).__name__}")
        self.views = views
        if held_back_targets is not None:
            held_back_targets = torch.as_tensor(held_back_targets)
            if held_back_targets.ndim != 1 or held_back_targets.dtype.is_floating_point:
                raise ValueError(f"Argument held_back_targets should be a 1-D tensor of integer labels, but given "
                                 f"shape {tuple(held_back_targets.shape)} and dtype {held_back_targets.dtype}")
        self.held_back_targets = held_back_targets
        self.alpha_name = check_identifier("alpha_name", alpha_name)
        self.skip_unlabeled_when_alpha_is_zero = bool(skip_unlabeled_when_alpha_is_zero)
        self._engine: Engine | None = None
        #: Detached scalar tensors of the last call (see the class description).
        self.components: dict[str, Any] = {}
        self._left_out_in_epoch: torch.Tensor | None = None  # samples with non-finite inputs, on the device
        self._warned_non_finite_inputs = False

    @property
    def threshold(self) -> float | None:
        """The fixed threshold, if the policy is a :class:`~ignite_pseudolabel.FixedThreshold`."""
        return self.policy.threshold if isinstance(self.policy, FixedThreshold) else None

    @property
    def state_attributes(self) -> tuple[str, ...]:
        """The attributes that :meth:`attach` publishes on ``engine.state``: :attr:`component_names`,
        and :attr:`fairness_component` when the loss has a fairness term. (The loss reads
        ``engine.state.<alpha_name>``; it does not publish it.)

        Examples:
            >>> PseudoLabelLoss(fairness=SelfAdaptiveFairness(3)).state_attributes  # doctest: +NORMALIZE_WHITESPACE
            ('supervised_loss', 'pseudo_loss', 'pseudo_mask_rate', 'pseudo_accuracy', 'pseudo_non_finite_inputs',
             'fairness_loss')
        """
        return self.component_names + ((self.fairness_component,) if self.fairness is not None else ())

    def attach(self, engine: Engine) -> None:
        """Reads alpha from ``engine.state`` and publishes the loss components there after every iteration.

        The attributes published are :attr:`state_attributes`.

        Raises:
            TypeError: if ``engine`` is not an ``Engine``.
            ValueError: if this loss is already attached, or ``engine.state`` already has one of the
                attributes it publishes.
        """
        check_attach(self, engine, self._engine, hint="; create one loss per trainer")
        claim_state_attributes(engine, self.state_attributes, "PseudoLabelLoss")
        self._engine = engine
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._publish)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._warn_non_finite_inputs)

    def _publish(self, engine: Engine) -> None:
        for name in self.state_attributes:
            setattr(engine.state, name, self.components.get(name))
        left_out = self.components.get("pseudo_non_finite_inputs")
        if left_out is not None and not self._warned_non_finite_inputs:  # a sum on the device: no host sync
            previous = self._left_out_in_epoch
            self._left_out_in_epoch = left_out if previous is None else previous + left_out

    def _warn_non_finite_inputs(self, engine: Engine) -> None:
        """Warns once, at the end of the first epoch with unlabeled samples whose inputs were not finite
        (one host synchronisation per epoch until then)."""
        total, self._left_out_in_epoch = self._left_out_in_epoch, None
        if total is None or self._warned_non_finite_inputs:
            return
        count = int(total)
        if count > 0:
            self._warned_non_finite_inputs = True
            warnings.warn(f"PseudoLabelLoss: {count} unlabeled or pseudo-labeled samples in epoch {engine.state.epoch} "
                          "had non-finite inputs (NaN or infinity); they were replaced by zeros and left out of the "
                          "pseudo term (engine.state.pseudo_non_finite_inputs counts them per iteration). This "
                          "warning is shown once.", RuntimeWarning, stacklevel=2)

    def current_alpha(self) -> float:
        """The weight of the pseudo term now: the constant ``alpha`` or ``engine.state.<alpha_name>``.

        Raises:
            RuntimeError: if no constant was given and the attached engine has no alpha (attach an
                :class:`~ignite_pseudolabel.AlphaRamp`), or the loss is not attached.
        """
        if self.alpha is not None:
            return self.alpha
        if self._engine is None:
            raise RuntimeError("PseudoLabelLoss has no alpha: give alpha=... or call loss.attach(trainer) and attach "
                               "an AlphaRamp to that trainer")
        value = getattr(self._engine.state, self.alpha_name, None)
        if value is None:
            raise RuntimeError(f"engine.state.{self.alpha_name} is not set: attach an AlphaRamp (or another state "
                               f"scheduler with param_name='{self.alpha_name}') to the trainer")
        return float(value)

    def prepare_batch(
        self,
        batch: SemiSupervisedBatch,
        device: str | torch.device | None = None,
        non_blocking: bool = False,
    ) -> tuple[torch.Tensor, SemiSupervisedTarget]:
        """Turns a :class:`~ignite_pseudolabel.SemiSupervisedBatch` into ``(inputs, target)``.

        The signature is that of the ``prepare_batch`` argument of Ignite's supervised trainers.
        The labeled inputs come first, then the unlabeled (weak and strong views, or only the
        student's inputs with a teacher) or pseudo-labeled inputs, left out while alpha is 0; each
        part is moved to ``device`` before one concatenation there. It is
        :func:`.prepare_semi_supervised_batch` with this loss's teacher and alpha.

        Raises:
            TypeError: if the batch does not come from :class:`~ignite_pseudolabel.SemiSupervisedLoader`
                or its parts do not have the documented structure.
            ValueError: if the parts' inputs differ in per-sample shape or dtype.
        """
        use_second = not (self.skip_unlabeled_when_alpha_is_zero and self.current_alpha() == 0.0)
        teacher: Any = self.teacher
        return prepare_semi_supervised_batch(batch, device=device, non_blocking=non_blocking, use_second=use_second,
                                             teacher=teacher, views=self.views)

    def forward(self, y_pred: torch.Tensor, target: SemiSupervisedTarget) -> torch.Tensor:
        if not isinstance(target, SemiSupervisedTarget):
            raise TypeError(f"Expected a SemiSupervisedTarget as target, but given {type(target).__name__}: pass "
                            "prepare_batch=loss.prepare_batch to create_supervised_trainer")
        if not isinstance(y_pred, torch.Tensor) or y_pred.ndim < 2:
            shape = tuple(y_pred.shape) if isinstance(y_pred, torch.Tensor) else type(y_pred).__name__
            raise ValueError(f"Expected the model to output logits of shape (N, C, ...), but given {shape}")
        n_labeled = target.labels.shape[0]
        other = y_pred[n_labeled:]
        n_other = other.shape[0]
        expected = n_other if target.pseudo_labels is None else target.pseudo_labels.shape[0]
        if n_other < 0 or expected != n_other or (target.views == 2 and n_other % 2):
            raise ValueError(f"The predictions have {y_pred.shape[0]} rows, which does not match {n_labeled} labels "
                             f"plus {expected} pseudo-labeled or unlabeled rows ({target.views} view(s))")
        supervised = self.supervised_loss(y_pred[:n_labeled], target.labels)
        accuracy: tuple[torch.Tensor, torch.Tensor] | None = None
        fairness = None if self.fairness is None else torch.zeros((), device=y_pred.device)
        left_out = self._count_left_out(target.unlabeled_valid if n_other else None, y_pred.device)
        if n_other == 0:
            pseudo = mask_rate = torch.zeros((), device=y_pred.device)
        elif target.pseudo_labels is not None:
            # Mined rows whose predictions are not finite are left out rather than turning the loss NaN;
            # rows whose inputs were not finite (zeroed by prepare_batch) are left out of the average too.
            usable = _broadcast_valid(target.unlabeled_valid, (n_other, *other.shape[2:]))
            mask = torch.isfinite(other.detach()).all(dim=1)
            mask = mask if usable is None else mask & usable
            pseudo = masked_cross_entropy(other, target.pseudo_labels, mask, valid=usable)
            mask_rate = mask.float().mean()
        else:
            if target.teacher_logits is not None:
                source, student = target.teacher_logits, other
            elif target.views == 2:
                source, student = other[: n_other // 2], other[n_other // 2:]
            else:
                source, student = other, other
            if source.shape != student.shape:
                raise ValueError(f"The pseudo-label source predictions have shape {tuple(source.shape)}, but the "
                                 f"student's have {tuple(student.shape)}")
            pseudo, mask, labels, fairness = self._online_term(source.detach(), student, target.sample_index,
                                                               target.unlabeled_valid)
            mask_rate = mask.float().mean()
            accuracy = self._accuracy(labels, mask, target.sample_index, target.unlabeled_targets, other.shape[1])
        self.components = self._components(supervised, pseudo, mask_rate, accuracy, fairness, left_out)
        alpha = self.current_alpha()
        if alpha == 0.0 or n_other == 0:
            return supervised
        if self.fairness is not None and fairness is not None:  # (both or neither: for the type checker)
            pseudo = pseudo + self.fairness.weight * fairness
        return supervised + alpha * pseudo

    @staticmethod
    def _count_left_out(valid: torch.Tensor | None, device: torch.device) -> torch.Tensor:
        """The number of samples none of whose entries of ``unlabeled_valid`` is True (a tensor: no host
        sync). A sample with some invalid elements only (e.g. the padding of a crop) is not left out."""
        if valid is None:
            return torch.zeros((), device=device)
        per_sample = valid.flatten(1).any(dim=1) if valid.ndim > 1 else valid
        return (~per_sample).sum()

    def _online_term(
        self,
        source: torch.Tensor,
        student: torch.Tensor,
        index: torch.Tensor | None,
        unlabeled_valid: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The pseudo term of online pseudo-labels, the mask used, the hard labels and the fairness term.

        Predictions outside ``unlabeled_valid`` (samples with non-finite inputs) are treated as
        predictions with non-finite logits (never used, out of every statistic) and, in addition, do
        not count in the average of the pseudo term."""
        num_classes = source.shape[1]
        modules = (("threshold policy", self.policy), ("alignment", self.alignment), ("fairness", self.fairness))
        for name, module in modules:
            expected = getattr(module, "num_classes", None)
            if expected is not None and expected != num_classes:
                raise ValueError(f"The model outputs {num_classes} classes, but the {name} "
                                 f"{type(module).__name__} was built for num_classes={expected}")
        shape = (source.shape[0], *source.shape[2:])
        usable = _broadcast_valid(unlabeled_valid, shape)
        # Work on (M, C) rows: one per sample, or one per element of dense predictions.
        probs, valid = finite_softmax(source.movedim(1, -1).reshape(-1, num_classes))
        if usable is not None:
            valid = valid & usable.reshape(-1)
        if self.alignment is not None:
            self._follow(self.alignment, probs)
            probs = self.alignment(probs, valid)
        labels = probs.argmax(dim=1)
        if self.policy is None:
            mask = valid
        else:
            self._follow(self.policy, probs)
            row_index = index if index is not None and index.shape[0] == probs.shape[0] else None
            if self.policy.needs_index and row_index is None and index is not None:
                raise ValueError(f"{type(self.policy).__name__} works on (N, C) predictions only, one per sample")
            mask = self.policy(probs, valid, row_index) & valid
        # A student prediction that is not finite is not trained on either (its loss would be NaN).
        labels, mask = labels.view(shape), mask.view(shape) & torch.isfinite(student.detach()).all(dim=1)
        fairness = None
        if self.fairness is not None:
            self._follow(self.fairness, probs)
            student_rows = student.movedim(1, -1).reshape(-1, num_classes)
            fairness = self.fairness(probs, valid, student_rows, mask.reshape(-1))
        if self.temperature is None:
            return masked_cross_entropy(student, labels, mask, valid=usable), mask, labels, fairness
        soft = sharpen(probs, self.temperature).view(*shape, num_classes).movedim(-1, 1)
        return masked_soft_cross_entropy(student, soft, mask, valid=usable), mask, labels, fairness

    @staticmethod
    def _follow(module: torch.nn.Module, t: torch.Tensor) -> None:
        """Moves a statistics module to the device of the predictions (once)."""
        buffer = next(module.buffers(), None)
        if buffer is not None and buffer.device != t.device:
            module.to(t.device)

    def _accuracy(
        self, labels: torch.Tensor, mask: torch.Tensor, index: torch.Tensor | None,
        truth: torch.Tensor | None = None, num_classes: int = 0,
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(correct, used) counts of the used pseudo-labels against the held-back targets: the batch's
        aligned ``truth`` (per element; elements whose truth is not a class, e.g. 255, not counted) or
        ``held_back_targets[index]``."""
        if truth is not None:
            used = mask & (truth >= 0) & (truth < num_classes)
            return ((labels == truth) & used).sum().float(), used.sum().float()
        if self.held_back_targets is None or index is None or labels.ndim != 1:
            return None
        if self.held_back_targets.device != labels.device:
            self.held_back_targets = self.held_back_targets.to(labels.device)
        correct = (labels == self.held_back_targets[index]) & mask
        return correct.sum().float(), mask.sum().float()

    @staticmethod
    def _components(
        supervised: torch.Tensor,
        pseudo: torch.Tensor,
        mask_rate: torch.Tensor,
        accuracy: tuple[torch.Tensor, torch.Tensor] | None,
        fairness: torch.Tensor | None = None,
        left_out: torch.Tensor | None = None,
    ) -> dict[str, Any]:
        """Detached scalars for logging; averaged (counts: summed) over processes under
        ``ignite.distributed`` (no host sync)."""
        values = [supervised.detach().float(), pseudo.detach().float(), mask_rate.detach().float()]
        if fairness is not None:
            values.append(fairness.detach().float())
        averaged = len(values)
        values.append(left_out.float() if left_out is not None else torch.zeros_like(values[0]))
        if accuracy is not None:
            values += list(accuracy)
        stats = torch.stack(values)
        world_size = idist.get_world_size()
        if world_size > 1:
            stats = idist.all_reduce(stats)  # type: ignore[assignment]
            stats[:averaged] = stats[:averaged] / world_size
        components = {
            "supervised_loss": stats[0],
            "pseudo_loss": stats[1],
            "pseudo_mask_rate": stats[2],
            "pseudo_accuracy": stats[averaged + 1] / stats[averaged + 2].clamp(min=1) if accuracy is not None else None,
            "pseudo_non_finite_inputs": stats[averaged],
        }
        if fairness is not None:
            components[PseudoLabelLoss.fairness_component] = stats[3]
        return components

    def extra_repr(self) -> str:
        alpha = self.alpha if self.alpha is not None else repr(self.alpha_name)
        return f"alpha={alpha}, temperature={self.temperature}, teacher={self.teacher is not None}"


# Kept for code that imported them (0.2); the names live on the class now.
STATE_ATTRIBUTES = PseudoLabelLoss.component_names
FAIRNESS_ATTRIBUTE = PseudoLabelLoss.fairness_component
