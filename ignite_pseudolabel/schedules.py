"""The weight of the pseudo-label term: Lee (2013)'s ramp as an Ignite state parameter scheduler."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from ignite.engine import CallableEventWithFilter, Engine, Events, EventsList
from ignite.handlers.state_param_scheduler import StateParamScheduler

from ._validation import check_choice, check_float, check_identifier, check_int

__all__ = ["AlphaRamp", "lee_ramp"]


def lee_ramp(t: int, t1: int, t2: int, alpha_f: float) -> float:
    """Lee (2013)'s weight of the pseudo-label loss at step ``t``.

    .. math::

        \\alpha(t) = \\begin{cases}
            0 & t < T_1 \\\\
            \\alpha_f \\, (t - T_1) / (T_2 - T_1) & T_1 \\le t < T_2 \\\\
            \\alpha_f & T_2 \\le t
        \\end{cases}

    Args:
        t: the current step (epoch or iteration).
        t1: the step at which the ramp starts (the value there is still 0).
        t2: the step from which the value is ``alpha_f``. ``t2 == t1`` gives a step function.
        alpha_f: the final weight.

    Returns:
        The weight, a Python float.

    Examples:
        >>> [lee_ramp(t, 2, 4, 3.0) for t in range(6)]
        [0.0, 0.0, 0.0, 1.5, 3.0, 3.0]
    """
    if t < t1:
        return 0.0
    if t >= t2:
        return float(alpha_f)
    return float(alpha_f) * (t - t1) / (t2 - t1)


class AlphaRamp(StateParamScheduler):
    """Publishes Lee (2013)'s ramp :func:`.lee_ramp` as ``engine.state.alpha``.

    The value is a pure function of the engine's own counter: with ``granularity="epoch"`` the alpha
    used while training epoch ``t`` (Ignite counts epochs from 1) is exactly ``lee_ramp(t, t1, t2,
    alpha_f)``, so epochs ``1 .. t1`` train with alpha 0 (``1 .. t1 - 1`` when ``t1 == t2``) and
    epoch ``t2`` onwards with ``alpha_f``.
    With ``granularity="iteration"`` ``t`` is the global iteration (from 1) and ``t1`` / ``t2`` count
    iterations. Because the value is recomputed from the engine's counter, it is right after a resume
    even before this handler's own state is restored (its state only holds the history).

    The defaults follow the paper (alpha_f = 3, T1 = 100, T2 = 600 epochs), not the seed tutorial's
    alpha_f = 1e-4, which makes the pseudo-label term negligible.

    Why it overrides most of Ignite's ``StateParamScheduler``: Ignite's schedulers count the events
    they have seen (``event_index += 1`` per call), so the value depends on how often the handler
    fired, including the ``STARTED`` event that sets alpha before the first batch, and after a
    resume it is right only once the scheduler's own state has been loaded; a
    ``LambdaStateScheduler`` with the ramp as a lambda would also not be picklable into a checkpoint.
    ``AlphaRamp`` keeps Ignite's ``attach``, ``state_dict``, ``param_history`` and ``simulate_values``
    contract but takes ``t`` from the engine's own counter in ``__call__``, which makes the value a
    pure function of the epoch (or iteration) and resume exact; ``load_state_dict`` also refuses a
    checkpoint written with another configuration.

    Args:
        t1: first step of the ramp (alpha is 0 up to and including it, unless ``t2 == t1``). Integer >= 0.
        t2: step from which alpha equals ``alpha_f``. Integer >= ``t1``.
        alpha_f: final weight, a finite number >= 0.
        granularity: ``"epoch"`` or ``"iteration"``: which counter ``t`` is.
        param_name: name of the attribute on ``engine.state`` (default ``"alpha"``).
        save_history: also append every value to ``engine.state.param_history[param_name]``.

    Examples:
        >>> from ignite.engine import Engine, Events
        >>> trainer = Engine(lambda engine, batch: engine.state.alpha)
        >>> AlphaRamp(t1=1, t2=3, alpha_f=3.0).attach(trainer)
        >>> seen = []
        >>> _ = trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: seen.append(e.state.output))
        >>> _ = trainer.run([0, 0], max_epochs=4)
        >>> seen
        [0.0, 1.5, 3.0, 3.0]

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.3.0
        :attr:`state_attributes`.
    """

    #: The attribute published when no ``param_name`` is given.
    default_param_name: ClassVar[str] = "alpha"

    def __init__(
        self,
        t1: int = 100,
        t2: int = 600,
        alpha_f: float = 3.0,
        *,
        granularity: str = "epoch",
        param_name: str = "alpha",
        save_history: bool = False,
    ) -> None:
        t1 = check_int("t1", t1, minimum=0)
        t2 = check_int("t2", t2, minimum=0)
        if t2 < t1:
            raise ValueError(f"Argument t2 should be an integer >= t1 = {t1}, but given {t2}")
        alpha_f = check_float("alpha_f", alpha_f, low=0.0)
        check_choice("granularity", granularity, ("epoch", "iteration"))
        check_identifier("param_name", param_name)
        super().__init__(param_name=param_name, save_history=save_history, create_new=True)
        self.t1, self.t2, self.alpha_f, self.granularity = t1, t2, alpha_f, granularity
        self._state_attrs += ["t1", "t2", "alpha_f", "granularity"]

    @property
    def state_attributes(self) -> tuple[str, ...]:
        """The attribute that :meth:`attach` publishes on ``engine.state``: ``(param_name,)``.

        Examples:
            >>> AlphaRamp(param_name="unlabeled_weight").state_attributes
            ('unlabeled_weight',)

        .. versionadded:: 0.3.0
        """
        return (self.param_name,)

    def attach(
        self,
        engine: Engine,
        event: str | Events | CallableEventWithFilter | EventsList | None = None,
    ) -> None:
        """Attaches the ramp to ``engine``.

        Args:
            engine: the trainer.
            event: when to update the value. By default ``STARTED | EPOCH_STARTED`` for epoch
                granularity and ``STARTED | ITERATION_STARTED`` for iteration granularity, so the
                value is set before the first batch of every epoch (or iteration) it applies to.

        Raises:
            ValueError: if ``engine.state`` already has an attribute with this ``param_name`` (for
                example when the ramp is attached twice).
        """
        if event is None:
            step = Events.EPOCH_STARTED if self.granularity == "epoch" else Events.ITERATION_STARTED
            event = Events.STARTED | step
        super().attach(engine, event)

    def __call__(self, engine: Engine) -> None:
        self.event_index = engine.state.epoch if self.granularity == "epoch" else engine.state.iteration
        value = self.get_param()
        setattr(engine.state, self.param_name, value)
        if self.save_history:
            engine.state.param_history[self.param_name].append(value)  # type: ignore[attr-defined]

    def get_param(self) -> float:
        """The value at the last seen step (``self.event_index``)."""
        return lee_ramp(self.event_index, self.t1, self.t2, self.alpha_f)

    def load_state_dict(self, state_dict: Mapping) -> None:
        """Restores the counter; the configuration in ``state_dict`` must equal this ramp's.

        Raises:
            ValueError: if the checkpoint was written by a ramp with another ``t1``, ``t2``,
                ``alpha_f``, ``granularity`` or ``param_name``.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"Argument state_dict should be a dictionary, but given {type(state_dict)}")
        for name in ("t1", "t2", "alpha_f", "granularity", "param_name"):
            if name in state_dict and state_dict[name] != getattr(self, name):
                raise ValueError(
                    f"Cannot load an AlphaRamp state saved with {name}={state_dict[name]!r} into an AlphaRamp "
                    f"with {name}={getattr(self, name)!r}: the checkpoint comes from another configuration"
                )
        super().load_state_dict(state_dict)

    @classmethod
    def simulate_values(cls, num_events: int, **scheduler_kwargs: Any) -> list[list[Any]]:  # type: ignore[override]
        """The values at steps ``1 .. num_events`` as ``[step, value]`` pairs.

        Examples:
            >>> AlphaRamp.simulate_values(4, t1=1, t2=3, alpha_f=3.0)
            [[1, 0.0], [2, 1.5], [3, 3.0], [4, 3.0]]
        """
        scheduler_kwargs.pop("save_history", None)
        ramp = cls(**scheduler_kwargs)
        return [[t, lee_ramp(t, ramp.t1, ramp.t2, ramp.alpha_f)] for t in range(1, num_events + 1)]
