"""Publishing the statistics: reduced once per record, only where they are published, and the epoch warning."""

import pytest
import torch
from ignite.engine import Engine, Events

from ignite_pseudolabel import SelfAdaptiveFairness
from ignite_pseudolabel.batch import SemiSupervisedTarget
from ignite_pseudolabel.criterion import LossStats, SemiSupervisedLoss
from ignite_pseudolabel.pseudo_term import PseudoTerm
from ignite_pseudolabel.publishing import COMPONENT_NAMES, LossStatsPublisher, reduce_stats


def two_processes(monkeypatch):
    """Another process with the same batch: all_reduce doubles; returns the list of reduced shapes."""
    import ignite.distributed as idist

    calls = []

    def all_reduce(t):
        calls.append(tuple(t.shape))
        return t * 2

    monkeypatch.setattr(idist, "get_world_size", lambda: 2)
    monkeypatch.setattr(idist, "all_reduce", all_reduce)
    return calls


def test_reduce_stats_averages_values_and_sums_counts(monkeypatch):
    t = torch.tensor
    stats = LossStats(t(1.0), t(0.5), t(0.25), t(3), t(2.0), t(4.0), {"fairness_loss": t(-0.5)})
    single = reduce_stats(stats)
    assert [float(single[k]) for k in COMPONENT_NAMES] == [1.0, 0.5, 0.25, 0.5, 3.0]
    calls = two_processes(monkeypatch)
    both = reduce_stats(stats)
    assert calls == [(7,)]  # one reduction for everything
    assert [float(both[k]) for k in COMPONENT_NAMES] == [1.0, 0.5, 0.25, 0.5, 6.0]  # the count is summed
    assert float(both["fairness_loss"]) == -0.5
    without = reduce_stats(stats._replace(pseudo_correct=None, pseudo_used=None))
    assert without["pseudo_accuracy"] is None


def test_the_reduction_happens_once_per_call_and_only_on_the_publishing_event(monkeypatch):
    calls = two_processes(monkeypatch)
    criterion = SemiSupervisedLoss()
    engine = Engine(lambda e, b: criterion(torch.randn(3, 2), SemiSupervisedTarget(torch.tensor([0]))))
    publisher = LossStatsPublisher(criterion)
    publisher.attach(engine, Events.ITERATION_COMPLETED(every=3))
    engine.run([0] * 6, max_epochs=2)
    # 12 iterations: published at 4 of them, plus one count reduction per epoch for the warning
    assert len(calls) == 4 + 2
    first = publisher.components()
    assert publisher.components() is first and len(calls) == 6  # read again: no new reduction
    assert engine.state.pseudo_mask_rate is first["pseudo_mask_rate"]


def test_the_warning_counts_left_out_samples_over_the_epoch():
    counts = iter([0, 1, 2, 0, 0, 0])
    criterion = SemiSupervisedLoss()

    def step(engine, batch):
        valid = torch.arange(3) >= next(counts)
        return criterion(torch.randn(4, 2), SemiSupervisedTarget(torch.tensor([0]), unlabeled_valid=valid))

    engine = Engine(step)
    LossStatsPublisher(criterion).attach(engine)
    with pytest.warns(RuntimeWarning, match="3 unlabeled or pseudo-labeled samples in epoch 1"):
        engine.run([0] * 3, max_epochs=2)


def test_attributes_attach_and_validation():
    criterion = SemiSupervisedLoss(PseudoTerm(regularisers=[SelfAdaptiveFairness(2)]))
    publisher = LossStatsPublisher(criterion)
    assert publisher.state_attributes == (*COMPONENT_NAMES, "fairness_loss") and publisher.components() == {}
    engine = Engine(lambda e, b: None)
    publisher.attach(engine)
    assert all(getattr(engine.state, name) is None for name in publisher.state_attributes)
    with pytest.raises(ValueError, match="already attached"):
        publisher.attach(engine)
    with pytest.raises(ValueError, match="'supervised_loss' already exists"):
        LossStatsPublisher(SemiSupervisedLoss()).attach(engine)
    with pytest.raises(TypeError, match="criterion should be a SemiSupervisedLoss, but given str"):
        LossStatsPublisher("loss")
