import math

import pytest
import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint

from ignite_pseudolabel import AlphaRamp
from ignite_pseudolabel.schedules import lee_ramp


def record(engine, attribute="alpha"):
    seen = []
    engine.add_event_handler(Events.ITERATION_STARTED, lambda e: seen.append((e.state.epoch, e.state.iteration,
                                                                              getattr(e.state, attribute))))
    return seen


def test_lee_ramp_values_around_t1_and_t2():
    t1, t2, a = 10, 20, 3.0
    assert lee_ramp(0, t1, t2, a) == 0.0
    assert lee_ramp(9, t1, t2, a) == 0.0
    assert lee_ramp(10, t1, t2, a) == 0.0
    assert lee_ramp(11, t1, t2, a) == pytest.approx(0.3)
    assert lee_ramp(15, t1, t2, a) == pytest.approx(1.5)
    assert lee_ramp(19, t1, t2, a) == pytest.approx(2.7)
    assert lee_ramp(20, t1, t2, a) == 3.0
    assert lee_ramp(10_000, t1, t2, a) == 3.0


def test_lee_ramp_step_when_t1_equals_t2():
    assert [lee_ramp(t, 3, 3, 2.0) for t in range(2, 5)] == [0.0, 2.0, 2.0]


def test_epoch_granularity_uses_alpha_of_the_current_epoch_for_every_iteration():
    trainer = Engine(lambda e, b: None)
    AlphaRamp(t1=2, t2=4, alpha_f=3.0).attach(trainer)
    seen = record(trainer)
    trainer.run([0, 0, 0], max_epochs=6)
    by_epoch = {}
    for epoch, _, alpha in seen:
        by_epoch.setdefault(epoch, set()).add(alpha)
    # Lee's alpha(t) exactly in epoch t, from its first iteration (no one-epoch lag).
    assert by_epoch == {1: {0.0}, 2: {0.0}, 3: {1.5}, 4: {3.0}, 5: {3.0}, 6: {3.0}}


def test_alpha_is_defined_before_the_first_iteration():
    trainer = Engine(lambda e, b: None)
    AlphaRamp(t1=0, t2=2, alpha_f=2.0).attach(trainer)
    at_start = []
    trainer.add_event_handler(Events.STARTED, lambda e: at_start.append(e.state.alpha))
    trainer.run([0], max_epochs=1)
    assert at_start == [0.0]


def test_iteration_granularity():
    trainer = Engine(lambda e, b: None)
    AlphaRamp(t1=2, t2=6, alpha_f=4.0, granularity="iteration").attach(trainer)
    seen = record(trainer)
    trainer.run([0, 0, 0, 0], max_epochs=2)
    assert [alpha for _, _, alpha in seen] == [0.0, 0.0, 1.0, 2.0, 3.0, 4.0, 4.0, 4.0]


def test_custom_event_and_param_name_and_history():
    trainer = Engine(lambda e, b: None)
    AlphaRamp(t1=0, t2=4, alpha_f=1.0, param_name="w", save_history=True).attach(
        trainer, Events.EPOCH_STARTED(every=2))
    trainer.run([0], max_epochs=4)
    assert trainer.state.param_history["w"] == [0.5, 1.0]  # epochs 2 and 4
    assert trainer.state.w == 1.0


def test_defaults_follow_lee_2013():
    ramp = AlphaRamp()
    assert (ramp.t1, ramp.t2, ramp.alpha_f) == (100, 600, 3.0)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"t1": -1}, ValueError, "t1 should be an integer >= 0, but given -1"),
        ({"t1": 1.5}, TypeError, "t1 should be an integer"),
        ({"t1": 5, "t2": 4}, ValueError, "t2 should be an integer >= t1 = 5, but given 4"),
        ({"alpha_f": -0.1}, ValueError, r"alpha_f should be a finite number in \[0, inf\), but given -0.1"),
        ({"alpha_f": math.inf}, ValueError, "alpha_f should be a finite number"),
        ({"alpha_f": math.nan}, ValueError, "alpha_f should be a finite number"),
        ({"alpha_f": "3"}, TypeError, "alpha_f should be a number"),
        ({"granularity": "batch"}, ValueError, "granularity should be one of 'epoch', 'iteration'"),
        ({"param_name": "not a name"}, ValueError, "param_name should be a valid Python identifier"),
    ],
)
def test_argument_validation(kwargs, error, match):
    with pytest.raises(error, match=match):
        AlphaRamp(**kwargs)


def test_attaching_twice_or_on_a_colliding_name_raises():
    trainer = Engine(lambda e, b: None)
    ramp = AlphaRamp(1, 2)
    ramp.attach(trainer)
    with pytest.raises(ValueError, match="already exists"):
        ramp.attach(trainer)
    with pytest.raises(ValueError, match="already exists"):
        AlphaRamp(1, 2).attach(trainer)


def test_state_dict_round_trip_through_checkpoint_and_resume(tmp_path):
    trainer = Engine(lambda e, b: None)
    ramp = AlphaRamp(t1=1, t2=5, alpha_f=2.0, save_history=True)
    ramp.attach(trainer)
    trainer.run([0, 0], max_epochs=3)
    torch.save({"ramp": ramp.state_dict(), "trainer": trainer.state_dict()}, tmp_path / "c.pt")

    trainer2 = Engine(lambda e, b: None)
    ramp2 = AlphaRamp(t1=1, t2=5, alpha_f=2.0, save_history=True)
    ramp2.attach(trainer2)
    Checkpoint.load_objects({"ramp": ramp2, "trainer": trainer2}, str(tmp_path / "c.pt"))
    assert ramp2.event_index == 3
    seen = record(trainer2)
    trainer2.run([0, 0], max_epochs=5)
    assert sorted({(epoch, alpha) for epoch, _, alpha in seen}) == [(4, 1.5), (5, 2.0)]


def test_loading_a_state_from_another_configuration_raises():
    state = AlphaRamp(t1=1, t2=5).state_dict()
    with pytest.raises(ValueError, match="saved with t2=5 into an AlphaRamp with t2=6"):
        AlphaRamp(t1=1, t2=6).load_state_dict(state)
    with pytest.raises(TypeError, match="should be a dictionary"):
        AlphaRamp().load_state_dict([1, 2])


def test_simulate_values():
    assert AlphaRamp.simulate_values(5, t1=2, t2=4, alpha_f=2.0) == [[1, 0.0], [2, 0.0], [3, 1.0], [4, 2.0], [5, 2.0]]
