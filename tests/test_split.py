import pytest
import torch

from ignite_pseudolabel import class_balanced_split


def make_targets():
    # 10 classes of unequal sizes, interleaved
    targets = torch.cat([torch.full((30 + 3 * c,), c) for c in range(10)])
    return targets[torch.randperm(len(targets))]


def test_parts_are_disjoint_cover_everything_and_are_class_balanced():
    targets = make_targets()
    split = class_balanced_split(targets, labeled_per_class=5, validation_per_class=7, seed=3)
    lab, val, unl = (set(p.tolist()) for p in split)
    assert not (lab & val) and not (lab & unl) and not (val & unl)
    assert lab | val | unl == set(range(len(targets)))
    assert torch.bincount(targets[split.labeled]).tolist() == [5] * 10
    assert torch.bincount(targets[split.validation]).tolist() == [7] * 10
    assert torch.bincount(targets[split.unlabeled]).tolist() == [30 + 3 * c - 12 for c in range(10)]
    for part in split:
        assert part.dtype == torch.int64 and torch.equal(part, torch.sort(part).values)


def test_seed_determines_the_split():
    targets = make_targets()
    a = class_balanced_split(targets, 5, 5, seed=1)
    b = class_balanced_split(targets, 5, 5, seed=1)
    c = class_balanced_split(targets, 5, 5, seed=2)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a.labeled, c.labeled)


def test_unlabeled_cap_and_sequence_input():
    split = class_balanced_split([0, 1] * 10, 2, 0, seed=0, unlabeled_per_class=3)
    assert len(split.labeled) == 4 and len(split.validation) == 0 and len(split.unlabeled) == 6


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"labeled_per_class": 0}, ValueError, "labeled_per_class should be an integer >= 1, but given 0"),
        ({"labeled_per_class": 1, "validation_per_class": -1}, ValueError, "validation_per_class"),
        ({"labeled_per_class": 1, "seed": "a"}, TypeError, "seed should be an integer"),
        ({"labeled_per_class": 8, "validation_per_class": 3}, ValueError, "Class 0 has 10 samples, fewer than"),
    ],
)
def test_argument_validation(kwargs, error, match):
    with pytest.raises(error, match=match):
        class_balanced_split([0, 1] * 10, **kwargs)


def test_rejects_non_integer_targets():
    with pytest.raises(ValueError, match="1-D sequence of integer labels"):
        class_balanced_split(torch.rand(10), 1)
