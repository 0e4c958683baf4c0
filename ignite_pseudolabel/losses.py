"""``PseudoLabelLoss``: the semi-supervised loss of a stock Ignite trainer, composed of the library's parts.

It is a composition: its ``prepare_batch`` is a :class:`~ignite_pseudolabel.prepare.PrepareBatch`,
its ``forward`` a :class:`~ignite_pseudolabel.criterion.SemiSupervisedLoss` over a
:class:`~ignite_pseudolabel.pseudo_term.PseudoTerm`, and its ``attach`` a
:class:`~ignite_pseudolabel.publishing.LossStatsPublisher`. The pure functions of the pseudo term
(:mod:`ignite_pseudolabel.functional`) and FreeMatch's fairness term
(:mod:`ignite_pseudolabel.regularisers`) are re-exported here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Callable, ClassVar

import torch
from ignite.engine import CallableEventWithFilter, Engine, Events, EventsList
from torch import nn

from ._validation import check_attach, check_identifier, check_instance, optional_float
from .alignment import DistributionAlignment
from .batch import SemiSupervisedTarget
from .criterion import SemiSupervisedLoss
from .functional import hard_pseudo_labels, masked_cross_entropy, masked_soft_cross_entropy
from .labels import AlignedLabels, HardLabels, LabelSource, SoftLabels
from .prepare import PrepareBatch
from .pseudo_term import PseudoTerm
from .publishing import COMPONENT_NAMES, LossStatsPublisher
from .regularisers import SelfAdaptiveFairness, self_adaptive_fairness
from .thresholds import FixedThreshold, ThresholdPolicy
from .unsupervised import UnsupervisedLoss

__all__ = [
    "PseudoLabelLoss",
    "SelfAdaptiveFairness",
    "hard_pseudo_labels",
    "masked_cross_entropy",
    "masked_soft_cross_entropy",
    "self_adaptive_fairness",
]


class PseudoLabelLoss(nn.Module):
    """``L_labeled + alpha * L_pseudo`` for a stock ``create_supervised_trainer``.

    Use it as the trainer's ``loss_fn`` and its ``prepare_batch`` (a
    :class:`~ignite_pseudolabel.prepare.PrepareBatch`) as the trainer's ``prepare_batch``; run the
    trainer on a :class:`~ignite_pseudolabel.SemiSupervisedLoader`. The labeled and the unlabeled (or
    pseudo-labeled) inputs go through the model in one forward pass; the loss splits the predictions
    again. Online pseudo-labels come from the predictions themselves (Lee 2013), from the weak view
    of :class:`~ignite_pseudolabel.Views` (FixMatch) or from a ``teacher``; mined ones from the
    loader's ``pseudo=`` batches. See the concepts page for the whole pipeline and what it leaves out
    (non-finite logits and inputs never train and never enter a statistic).

    ``alpha`` is read from ``engine.state.<alpha_name>`` (set by :class:`~ignite_pseudolabel.AlphaRamp`)
    at every call unless a constant is given; while it is 0, ``prepare_batch`` leaves the second
    batch out. After :meth:`attach`, every iteration publishes :attr:`state_attributes` on
    ``engine.state`` (detached tensors; see :class:`~ignite_pseudolabel.publishing.LossStatsPublisher`).
    The statistics of the policy, the alignment and the regularisers are buffers saved in this
    module's ``state_dict`` under the names of the arguments that hold them (``policy.``,
    ``alignment.``, ``fairness.``, ``labels.``, ``regularisers.<i>.``).

    Args:
        threshold: a minimum softmax confidence in [0, 1] (``None`` or 0: use all, as Lee 2013 does),
            or a :class:`~ignite_pseudolabel.ThresholdPolicy` (a mask or float weights per prediction).
        alpha: a constant weight instead of reading ``engine.state.<alpha_name>``. A number >= 0.
        supervised_loss: loss of the labeled rows, ``fn(logits, labels)`` (default cross-entropy; e.g.
            ``nn.CrossEntropyLoss(ignore_index=255)`` for segmentation).
        temperature: soft pseudo-labels sharpened with this temperature in (0, 1] (``None``: hard labels).
        alignment: a :class:`~ignite_pseudolabel.DistributionAlignment` applied to the probabilities
            before thresholding.
        fairness: a :class:`~ignite_pseudolabel.SelfAdaptiveFairness` term (FreeMatch), or ``None``.
        teacher: a model producing the pseudo-labels (called without gradients, in its current mode).
        views: a view backend making the weak and strong views of raw unlabeled batches on the
            trainer's device (e.g. :class:`~ignite_pseudolabel.batch_views.BatchViews`), or ``None``.
        held_back_targets: the true labels of the unlabeled dataset, indexed by ``Views.sample_index``,
            for ``pseudo_accuracy`` only (benchmarks).
        alpha_name: the ``engine.state`` attribute holding alpha (default ``"alpha"``).
        skip_unlabeled_when_alpha_is_zero: leave the second batch out while alpha is 0 (default ``True``).
        labels: a :class:`~ignite_pseudolabel.labels.LabelSource` instead of ``temperature`` / ``alignment``.
        unsupervised_loss: an :class:`~ignite_pseudolabel.unsupervised.UnsupervisedLoss` (default: the
            masked cross-entropy).
        regularisers: more regularisers of the pseudo term (after ``fairness``).
        teacher_autocast: the dtype of an autocast around the teacher's forward, or ``None``.

    Examples:
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
        A composition of :class:`~ignite_pseudolabel.prepare.PrepareBatch`,
        :class:`~ignite_pseudolabel.criterion.SemiSupervisedLoss` and
        :class:`~ignite_pseudolabel.publishing.LossStatsPublisher`; ``fairness``, ``views``,
        ``labels``, ``unsupervised_loss``, ``regularisers``, ``teacher_autocast``; policies may
        return float weights; statistics reduced across processes where they are published.
    """

    #: The trainer's ``prepare_batch``: a :class:`~ignite_pseudolabel.prepare.PrepareBatch` with this loss's
    #: views and teacher, leaving the second batch out while alpha is 0.
    prepare_batch: PrepareBatch
    #: The engine-free criterion that ``forward`` calls.
    criterion: SemiSupervisedLoss
    #: The components that :meth:`attach` publishes on ``engine.state`` (regularisers add theirs).
    component_names: ClassVar[tuple[str, ...]] = COMPONENT_NAMES
    #: The component of a :class:`SelfAdaptiveFairness` term.
    fairness_component: ClassVar[str] = SelfAdaptiveFairness.component

    def __init__(
        self,
        threshold: float | ThresholdPolicy | None = None,
        *,
        alpha: float | None = None,
        supervised_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        temperature: float | None = None,
        alignment: DistributionAlignment | None = None,
        fairness: SelfAdaptiveFairness | None = None,
        teacher: nn.Module | None = None,
        views: Callable[[Any], Any] | None = None,
        held_back_targets: torch.Tensor | None = None,
        alpha_name: str = "alpha",
        skip_unlabeled_when_alpha_is_zero: bool = True,
        labels: LabelSource | None = None,
        unsupervised_loss: UnsupervisedLoss | None = None,
        regularisers: Iterable[nn.Module] = (),
        teacher_autocast: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.policy = threshold if threshold is None or isinstance(threshold, ThresholdPolicy) else \
            FixedThreshold(threshold)
        self.alpha = optional_float("alpha", alpha, low=0.0)
        self.temperature = optional_float("temperature", temperature, low=0.0, high=1.0, low_inclusive=False)
        self.alignment = None if alignment is None else check_instance("alignment", alignment, DistributionAlignment)
        self.fairness = None if fairness is None else check_instance("fairness", fairness, SelfAdaptiveFairness)
        if labels is not None and (temperature is not None or alignment is not None):
            raise ValueError("Argument labels replaces temperature and alignment: give labels=AlignedLabels(alignment, "
                             "SoftLabels(temperature)) alone")
        self.labels = None if labels is None else check_instance("labels", labels, LabelSource)
        self.unsupervised_loss = unsupervised_loss
        self.regularisers = nn.ModuleList(regularisers)
        self.alpha_name = check_identifier("alpha_name", alpha_name)
        term = PseudoTerm(self.labels or self._label_source(), self.policy, unsupervised_loss,
                          [*([self.fairness] if self.fairness is not None else []), *self.regularisers])
        # Held outside the registered children: the state_dict layout is the arguments' names (see above).
        self.__dict__["criterion"] = SemiSupervisedLoss(term, supervised_loss=supervised_loss,
                                                         weight=self.current_alpha, held_back_targets=held_back_targets)
        self.__dict__["prepare_batch"] = PrepareBatch(views=views, teacher=teacher, weight=self.current_alpha,
                                                      skip_when_zero=skip_unlabeled_when_alpha_is_zero,
                                                      teacher_autocast=teacher_autocast)
        self.__dict__["_publisher"] = LossStatsPublisher(self.criterion)
        self._engine: Engine | None = None

    def _label_source(self) -> LabelSource:
        labels = HardLabels() if self.temperature is None else SoftLabels(self.temperature)
        return labels if self.alignment is None else AlignedLabels(self.alignment, labels)

    @property
    def threshold(self) -> float | None:
        """The fixed threshold, if the policy is a :class:`~ignite_pseudolabel.FixedThreshold`."""
        return self.policy.threshold if isinstance(self.policy, FixedThreshold) else None

    @property
    def teacher(self) -> Any:
        """The teacher model of :attr:`prepare_batch`, or ``None``."""
        return self.prepare_batch.teacher

    @property
    def views(self) -> Any:
        """The view backend of :attr:`prepare_batch`, or ``None``."""
        return self.prepare_batch.views

    @property
    def held_back_targets(self) -> torch.Tensor | None:
        """The held-back true labels used for ``pseudo_accuracy``, or ``None``."""
        return self.criterion.held_back_targets

    @property
    def components(self) -> dict[str, Any]:
        """The last call's components (detached tensors, reduced across processes when read)."""
        return self._publisher.components()

    @property
    def state_attributes(self) -> tuple[str, ...]:
        """The attributes :meth:`attach` publishes: :attr:`component_names` and each regulariser's
        ``component`` (``fairness_loss``). The loss reads ``engine.state.<alpha_name>``; it does not publish it.

        Examples:
            >>> PseudoLabelLoss(fairness=SelfAdaptiveFairness(3)).state_attributes  # doctest: +NORMALIZE_WHITESPACE
            ('supervised_loss', 'pseudo_loss', 'pseudo_mask_rate', 'pseudo_accuracy', 'pseudo_non_finite_inputs',
             'fairness_loss')
        """
        return self._publisher.state_attributes

    def attach(self, engine: Engine,
               event: Events | CallableEventWithFilter | EventsList = Events.ITERATION_COMPLETED) -> None:
        """Reads alpha from ``engine.state`` and publishes the components there on ``event`` (every iteration).

        Raises:
            TypeError: if ``engine`` is not an ``Engine``.
            ValueError: if this loss is already attached, or ``engine.state`` already has one of the
                attributes it publishes.
        """
        check_attach(self, engine, self._engine, hint="; create one loss per trainer")
        self._publisher.attach(engine, event)
        self._engine = engine

    def _publish(self, engine: Engine) -> None:
        self._publisher(engine)

    @property
    def _left_out_in_epoch(self) -> torch.Tensor | None:
        return self._publisher._left_out_in_epoch

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

    def forward(self, y_pred: torch.Tensor, target: SemiSupervisedTarget) -> torch.Tensor:
        return self.criterion(y_pred, target)

    def extra_repr(self) -> str:
        alpha = self.alpha if self.alpha is not None else repr(self.alpha_name)
        return f"alpha={alpha}, temperature={self.temperature}, teacher={self.teacher is not None}"


# Kept for code that imported them (0.2); the names live on the class now.
STATE_ATTRIBUTES = PseudoLabelLoss.component_names
FAIRNESS_ATTRIBUTE = PseudoLabelLoss.fairness_component
