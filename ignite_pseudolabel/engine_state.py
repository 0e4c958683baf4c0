"""Publishing a handler's values on another engine's ``engine.state`` (e.g. the miner's results on the trainer)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable

from ignite.engine import Engine

from ._validation import check_attach, check_identifier, claim_state_attributes

__all__ = ["StatePublisher"]


class StatePublisher:
    """Sets named values on the state of the engine it is attached to, each time it is called.

    :meth:`attach` claims the names on ``engine.state`` (none may exist yet, as Ignite's
    ``create_new``: two handlers must not write the same attribute) and publishes the current
    values. Every call publishes them again; before :meth:`attach` a call does nothing. As an Ignite
    handler it can be added to any event of any engine (the engine it is called with is ignored).

    Args:
        names: the attributes to set on ``engine.state``.
        values: returns the current values, one per name, in the order of ``names``.
        owner: who publishes, named in the collision error.

    Raises:
        TypeError: if ``values`` is not callable.
        ValueError: if a name is not a valid Python identifier or appears twice.

    Examples:
        >>> from ignite.engine import Engine
        >>> counts = [0]
        >>> publisher = StatePublisher(["rounds_so_far"], lambda: (counts[0],), owner="Example")
        >>> trainer = Engine(lambda engine, batch: None)
        >>> publisher.attach(trainer)
        >>> counts[0] = 3
        >>> publisher()
        >>> trainer.state.rounds_so_far
        3

    .. versionadded:: 0.3.0
    """

    def __init__(
        self, names: Sequence[str], values: Callable[[], Sequence[Any]], owner: str = "StatePublisher"
    ) -> None:
        self.names = tuple(check_identifier("names", name) for name in names)
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"Argument names should hold distinct names, but given {list(self.names)}")
        if not callable(values):
            raise TypeError(f"Argument values should be callable, but given {type(values).__name__}")
        self.values = values
        self.owner = owner
        self.engine: Engine | None = None

    def attach(self, engine: Engine) -> None:
        """Claims the names on ``engine.state`` and publishes the current values there.

        Raises:
            TypeError: if ``engine`` is not an ``Engine``.
            ValueError: if this publisher is already attached, or one of the names exists on the state.
        """
        check_attach(self, engine, self.engine)
        claim_state_attributes(engine, self.names, self.owner)
        self.engine = engine
        self()

    def __call__(self, _: Engine | None = None) -> None:
        """Publishes the current values on the state of the engine attached to (nothing before :meth:`attach`)."""
        if self.engine is not None:
            for name, value in zip(self.names, self.values()):
                setattr(self.engine.state, name, value)
