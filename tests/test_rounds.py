"""The pseudo-labeled set round after round: replace or grow, accepted rounds, the resumable state."""

import pytest
import torch
from ignite.handlers import Checkpoint

from ignite_pseudolabel.datasets import PseudoLabeledDataset
from ignite_pseudolabel.rounds import MiningRounds

CONFIG = {"threshold": 0.9, "max_per_class": None, "k_best": None, "class_fraction": None}


def make_rounds(size=5, **kwargs):
    kwargs.setdefault("config", CONFIG)
    return MiningRounds(PseudoLabeledDataset(torch.arange(float(size))), **kwargs)


def record(rounds, indices, labels):
    indices = torch.tensor(indices, dtype=torch.int64)
    rounds.record(indices, torch.tensor(labels, dtype=torch.int64), torch.full((len(indices),), 0.95))


def test_replace_mode_keeps_the_last_round_only():
    rounds = make_rounds()
    assert rounds.candidates(torch.arange(5)) is None  # every sample may be accepted again
    record(rounds, [0, 3], [1, 0])
    version = rounds.dataset.version
    record(rounds, [1], [2])
    assert rounds.rounds == 2 and rounds.indices.tolist() == [1] and rounds.labels.tolist() == [2]
    assert rounds.accepted_round.tolist() == [-1, 2, -1, -1, -1]
    assert len(rounds.dataset) == 1 and rounds.dataset[0] == (torch.tensor(1.0), 2)
    assert rounds.dataset.version == version + 1  # the loader starts over on the new set


def test_grow_mode_keeps_earlier_labels_and_offers_only_new_candidates():
    rounds = make_rounds(grow=True)
    record(rounds, [3], [1])
    assert rounds.candidates(torch.tensor([4, 3, 0])).tolist() == [True, False, True]
    record(rounds, [0, 4], [0, 2])
    assert rounds.indices.tolist() == [0, 3, 4] and rounds.labels.tolist() == [0, 1, 2]
    assert rounds.confidences.shape == (3,)
    assert rounds.accepted_round.tolist() == [2, -1, -1, 1, 2]
    assert [rounds.dataset[i][1] for i in range(3)] == [0, 1, 2]


def test_an_empty_round_counts():
    rounds = make_rounds(grow=True)
    record(rounds, [2], [1])
    record(rounds, [], [])
    assert rounds.rounds == 2 and rounds.indices.tolist() == [2] and rounds.accepted_round.tolist()[2] == 1


def test_max_rounds_ends_the_rounds_that_are_due():
    rounds = make_rounds(max_rounds=2)
    assert rounds.due
    record(rounds, [0], [0])
    record(rounds, [1], [0])
    assert not rounds.due
    assert make_rounds().due


def test_state_dict_round_trip_through_a_checkpoint(tmp_path):
    rounds = make_rounds(grow=True, num_classes=3)
    record(rounds, [1, 4], [2, 0])
    state = rounds.state_dict()
    assert list(state) == ["indices", "labels", "confidences", "accepted_round", "rounds", "num_classes",
                           "dataset_size", "threshold", "max_per_class", "k_best", "class_fraction", "grow"]
    assert all(isinstance(v, (torch.Tensor, int, float, type(None))) for v in state.values())
    torch.save({"rounds": state}, tmp_path / "rounds.pt")
    fresh = make_rounds(grow=True)
    Checkpoint.load_objects({"rounds": fresh}, str(tmp_path / "rounds.pt"))
    assert fresh.indices.tolist() == [1, 4] and fresh.labels.tolist() == [2, 0] and fresh.rounds == 1
    assert torch.equal(fresh.accepted_round, rounds.accepted_round) and fresh.num_classes == 3
    assert len(fresh.dataset) == 2 and fresh.dataset[1] == (torch.tensor(4.0), 0)
    # the state is a copy: recording more rounds does not change it
    record(rounds, [0], [1])
    assert state["indices"].tolist() == [1, 4]


@pytest.mark.parametrize(
    "other, match",
    [
        ({"config": {**CONFIG, "threshold": 0.5}}, "saved with threshold=0.9 into a miner with threshold=0.5"),
        ({"grow": False}, "saved with grow=True into a miner with grow=False"),
        ({"size": 6}, "saved with dataset_size=5 into a miner with dataset_size=6"),
        ({"num_classes": 4}, "saved with num_classes=3 into a miner with num_classes=4"),
    ],
)
def test_a_state_of_another_configuration_is_refused(other, match):
    rounds = make_rounds(grow=True, num_classes=3)
    record(rounds, [0], [1])
    kwargs = {"grow": True, **other}
    target = make_rounds(**kwargs)
    with pytest.raises(ValueError, match=match):
        target.load_state_dict(rounds.state_dict())
    assert target.rounds == 0 and len(target.dataset) == 0  # nothing restored


def test_the_number_of_classes_is_taken_from_the_state_when_unknown():
    rounds = make_rounds(num_classes=3)
    record(rounds, [0], [1])
    unknown = make_rounds()
    unknown.load_state_dict(rounds.state_dict())
    assert unknown.num_classes == 3
    with pytest.raises(ValueError, match="Required state attribute 'accepted_round' is absent"):
        unknown.load_state_dict({k: v for k, v in rounds.state_dict().items() if k != "accepted_round"})


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: MiningRounds(torch.zeros(3)), TypeError, "dataset should be a PseudoLabeledDataset, but given Tensor"),
        (lambda: make_rounds(max_rounds=0), ValueError, "max_rounds should be an integer >= 1, but given 0"),
        (lambda: make_rounds(num_classes=1), ValueError, "num_classes should be an integer >= 2, but given 1"),
        (lambda: make_rounds(num_classes=2.0), TypeError, "num_classes should be an integer"),
    ],
)
def test_argument_validation(make, error, match):
    with pytest.raises(error, match=match):
        make()
