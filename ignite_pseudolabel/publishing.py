"""The loss's statistics on ``engine.state``: reduced across processes where they are read, not in every forward.

:func:`reduce_stats` turns a :class:`~ignite_pseudolabel.criterion.LossStats` record into the
published components with one ``all_reduce`` under ``ignite.distributed`` (averages, and sums of
counts). :class:`LossStatsPublisher` is the Ignite handler that does it on the event of the user's
choice (every iteration by default; ``Events.ITERATION_COMPLETED(every=50)`` reduces once per 50
iterations) and warns once about samples whose inputs were not finite.
"""

from __future__ import annotations

import warnings
from typing import Any

import ignite.distributed as idist
import torch
from ignite.engine import CallableEventWithFilter, Engine, Events, EventsList

from ._validation import check_attach, check_instance
from .criterion import LossStats, SemiSupervisedLoss
from .engine_state import StatePublisher

__all__ = ["COMPONENT_NAMES", "LossStatsPublisher", "reduce_stats"]

#: The components every semi-supervised loss publishes (regularisers add their own names).
COMPONENT_NAMES = ("supervised_loss", "pseudo_loss", "pseudo_mask_rate", "pseudo_accuracy",
                   "pseudo_non_finite_inputs")


def reduce_stats(stats: LossStats) -> dict[str, Any]:
    """The published components of a statistics record: averaged over processes (counts summed, accuracy
    from the summed counts), in one ``all_reduce``; the values stay tensors on their device.

    Examples:
        >>> from ignite_pseudolabel.criterion import LossStats
        >>> t = torch.tensor
        >>> stats = LossStats(t(0.5), t(0.25), t(0.5), t(0), t(3.0), t(4.0), {"fairness_loss": t(-1.0)})
        >>> {k: float(v) for k, v in reduce_stats(stats).items()}  # doctest: +NORMALIZE_WHITESPACE
        {'supervised_loss': 0.5, 'pseudo_loss': 0.25, 'pseudo_mask_rate': 0.5, 'pseudo_accuracy': 0.75,
         'pseudo_non_finite_inputs': 0.0, 'fairness_loss': -1.0}
    """
    values = [stats.supervised_loss.float(), stats.pseudo_loss.float(), stats.pseudo_mask_rate.float(),
              *(v.float() for v in stats.regularisers.values())]
    averaged = len(values)
    values.append(stats.pseudo_non_finite_inputs.float())
    has_accuracy = stats.pseudo_correct is not None and stats.pseudo_used is not None
    if has_accuracy:
        values += [stats.pseudo_correct, stats.pseudo_used]  # type: ignore[list-item]
    reduced = torch.stack(values)
    world_size = idist.get_world_size()
    if world_size > 1:
        reduced = idist.all_reduce(reduced)  # type: ignore[assignment]
        reduced[:averaged] = reduced[:averaged] / world_size
    components = dict(zip(COMPONENT_NAMES[:3], reduced[:3]))
    components["pseudo_accuracy"] = reduced[averaged + 1] / reduced[averaged + 2].clamp(min=1) if has_accuracy \
        else None
    components["pseudo_non_finite_inputs"] = reduced[averaged]
    components.update(zip(stats.regularisers, reduced[3:averaged]))
    return components


class LossStatsPublisher:
    """Publishes the statistics of a :class:`~ignite_pseudolabel.criterion.SemiSupervisedLoss` on ``engine.state``.

    On ``event`` (after every iteration by default) it sets :attr:`state_attributes` to the last
    call's components (:func:`reduce_stats`: detached tensors, reduced across processes there and only
    there; no host synchronisation). It also counts the samples left out because their inputs were
    not finite and, at the end of the first epoch that had some, warns once (one host
    synchronisation per epoch until then). :class:`~ignite_pseudolabel.PseudoLabelLoss` attaches one
    in its ``attach``.

    Args:
        criterion: the loss whose ``stats`` to publish.

    Examples:
        >>> from ignite.engine import Engine
        >>> from ignite_pseudolabel.batch import SemiSupervisedTarget
        >>> criterion = SemiSupervisedLoss()
        >>> engine = Engine(lambda e, b: criterion(torch.zeros(3, 2), SemiSupervisedTarget(torch.tensor([0]))))
        >>> LossStatsPublisher(criterion).attach(engine, Events.ITERATION_COMPLETED(every=2))
        >>> float(engine.run([0] * 4).pseudo_mask_rate)
        1.0

    .. versionadded:: 0.3.0
    """

    def __init__(self, criterion: SemiSupervisedLoss) -> None:
        self.criterion = check_instance("criterion", criterion, SemiSupervisedLoss)
        self._cache: tuple[LossStats | None, dict[str, Any]] = (None, {})
        self._counted: LossStats | None = None
        self._left_out_in_epoch: torch.Tensor | None = None  # on the device: no host sync per iteration
        self._warned = False
        self._engine: Engine | None = None
        self._state = StatePublisher(self.state_attributes, self._values, owner="PseudoLabelLoss")

    @property
    def state_attributes(self) -> tuple[str, ...]:
        """:data:`COMPONENT_NAMES` and the ``component`` of each regulariser of the criterion's pseudo term."""
        return COMPONENT_NAMES + tuple(r.component for r in self.criterion.term.regularisers)

    def components(self) -> dict[str, Any]:
        """The last call's components (reduced once per call, however often they are read; ``{}`` before)."""
        stats = self.criterion.stats
        if stats is None:
            return {}
        if self._cache[0] is not stats:
            self._cache = (stats, reduce_stats(stats))
        return self._cache[1]

    def attach(self, engine: Engine,
               event: Events | CallableEventWithFilter | EventsList = Events.ITERATION_COMPLETED) -> None:
        """Publishes on ``event`` of ``engine``; counts and warns on its iterations and epochs.

        Raises:
            TypeError: if ``engine`` is not an ``Engine``.
            ValueError: if already attached, or ``engine.state`` already has one of the attributes.
        """
        check_attach(self, engine, self._engine, hint="; create one loss per trainer")
        self._state.attach(engine)
        self._engine = engine
        engine.add_event_handler(event, self)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._count_left_out)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._warn_non_finite_inputs)

    def __call__(self, engine: Engine) -> None:
        self._state()

    def _values(self) -> list[Any]:
        components = self.components()
        return [components.get(name) for name in self.state_attributes]

    def _count_left_out(self, _: Engine) -> None:
        stats = self.criterion.stats
        if stats is None or stats is self._counted or self._warned:
            return
        self._counted = stats
        count = stats.pseudo_non_finite_inputs.float()
        previous = self._left_out_in_epoch
        self._left_out_in_epoch = count if previous is None else previous + count

    def _warn_non_finite_inputs(self, engine: Engine) -> None:
        total, self._left_out_in_epoch = self._left_out_in_epoch, None
        if total is None or self._warned:
            return
        count = int(idist.all_reduce(total) if idist.get_world_size() > 1 else total)
        if count > 0:
            self._warned = True
            warnings.warn(f"PseudoLabelLoss: {count} unlabeled or pseudo-labeled samples in epoch {engine.state.epoch} "
                          "had non-finite inputs (NaN or infinity); they were replaced by zeros and left out of the "
                          "pseudo term (engine.state.pseudo_non_finite_inputs counts them per iteration). This "
                          "warning is shown once.", RuntimeWarning, stacklevel=2)
