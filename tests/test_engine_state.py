"""Publishing values on another engine's state."""

import pytest
from ignite.engine import Engine, Events

from ignite_pseudolabel.engine_state import StatePublisher


def test_attach_claims_the_names_and_every_call_publishes_the_current_values():
    values = {"count": 0, "rate": None}
    publisher = StatePublisher(["count", "rate"], lambda: (values["count"], values["rate"]), owner="Counter")
    publisher()  # not attached: nothing to publish on, no error
    trainer = Engine(lambda e, b: None)
    before = set(vars(trainer.state))
    publisher.attach(trainer)
    assert set(vars(trainer.state)) - before == {"count", "rate"}
    assert trainer.state.count == 0 and trainer.state.rate is None
    values.update(count=4, rate=0.5)
    publisher()
    assert (trainer.state.count, trainer.state.rate) == (4, 0.5)


def test_a_publisher_is_an_ignite_handler_of_any_engine():
    calls = []
    publisher = StatePublisher(["calls"], lambda: (len(calls),))
    trainer, other = Engine(lambda e, b: None), Engine(lambda e, b: calls.append(b))
    publisher.attach(trainer)
    other.add_event_handler(Events.COMPLETED, publisher)  # publishes on the trainer when the other engine ends
    other.run([0, 0, 0], max_epochs=1)
    assert trainer.state.calls == 3


def test_names_are_claimed_once():
    trainer = Engine(lambda e, b: None)
    first = StatePublisher(["count"], lambda: (1,), owner="Counter")
    first.attach(trainer)
    with pytest.raises(ValueError, match="already attached to an engine"):
        first.attach(trainer)
    second = StatePublisher(["other", "count"], lambda: (2, 2), owner="Counter")
    with pytest.raises(ValueError, match="'count' already exists in the engine.state; is another Counter attached"):
        second.attach(trainer)
    assert not hasattr(trainer.state, "other") and trainer.state.count == 1  # nothing claimed, nothing overwritten


@pytest.mark.parametrize(
    "args, error, match",
    [
        ((["not a name"], lambda: (1,)), ValueError, "names should be a valid Python identifier, but given 'not a"),
        ((["a", "a"], lambda: (1, 1)), ValueError, r"names should hold distinct names, but given \['a', 'a'\]"),
        ((["a"], (1,)), TypeError, "values should be callable, but given tuple"),
    ],
)
def test_argument_validation(args, error, match):
    with pytest.raises(error, match=match):
        StatePublisher(*args)
    with pytest.raises(TypeError, match="engine should be an ignite Engine"):
        StatePublisher(["a"], lambda: (1,)).attach("trainer")
