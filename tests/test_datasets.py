import pytest
import torch
from torch.utils.data import TensorDataset

from ignite_pseudolabel import PseudoLabeledDataset, UnlabeledDataset


class Recording(torch.utils.data.Dataset):
    """An inputs-only dataset that records which positions were read and applies a 'transform'."""

    def __init__(self, n):
        self.read = []
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        self.read.append(i)
        return torch.tensor([float(i)]) * 10  # the dataset's own transform


def test_unlabeled_view_drops_labels_and_keeps_them_back():
    base = TensorDataset(torch.arange(6.0), torch.tensor([5, 4, 3, 2, 1, 0]))
    view = UnlabeledDataset(base, indices=torch.tensor([4, 0]))
    assert len(view) == 2 and view[0] == 4.0 and view[1] == 0.0
    assert view.held_back_targets().tolist() == [1, 5]


def test_unlabeled_view_reads_targets_attribute_without_loading():
    class WithTargets(Recording):
        targets = list(range(100, 110))

    base = WithTargets(10)
    view = UnlabeledDataset(base, indices=[3, 7])
    assert view.held_back_targets().tolist() == [103, 107]
    assert base.read == []


def test_unlabeled_view_rejects_inputs_only_items_and_bad_indices():
    with pytest.raises(TypeError, match="expects the wrapped dataset to return"):
        UnlabeledDataset(torch.arange(3.0))[0]
    with pytest.raises(ValueError, match=r"indices in \[0, 3\)"):
        UnlabeledDataset(torch.arange(3.0), indices=[3])
    with pytest.raises(TypeError, match="map-style dataset"):
        UnlabeledDataset(5)


def test_pseudo_view_returns_the_indexed_samples_through_the_dataset_transform():
    base = Recording(10)
    view = PseudoLabeledDataset(base, indices=[7, 2], labels=[1, 0])
    assert len(view) == 2
    x, y = view[0]
    assert torch.equal(x, torch.tensor([70.0])) and y == 1
    assert view[1][1] == 0 and base.read == [7, 2]


def test_pseudo_view_update_bumps_version_and_validates():
    view = PseudoLabeledDataset(torch.zeros(5, 2))
    assert len(view) == 0 and view.version == 1
    view.update([1, 2], [0, 1])
    assert len(view) == 2 and view.version == 2
    with pytest.raises(ValueError, match="same length"):
        view.update([1], [0, 1])
    with pytest.raises(ValueError, match=r"indices in \[0, 5\)"):
        view.update([5], [0])
    with pytest.raises(ValueError, match="integer indices"):
        view.update(torch.tensor([0.5]), [0])


def test_pseudo_view_rejects_labeled_base_dataset():
    view = PseudoLabeledDataset(TensorDataset(torch.zeros(3), torch.zeros(3)), [0], [1])
    with pytest.raises(TypeError, match="wrap a labeled dataset in UnlabeledDataset"):
        view[0]


def test_pseudo_view_and_weak_strong_views_unwrap_one_element_items():
    from ignite_pseudolabel import WeakStrongViews

    x = torch.arange(8.0).view(4, 2)
    view = PseudoLabeledDataset(TensorDataset(x), [3, 1], [0, 2])
    item, label = view[0]
    assert torch.equal(item, x[3]) and label == 0
    views = WeakStrongViews(TensorDataset(x), lambda t: t + 1, lambda t: t * 2)[2]
    assert torch.equal(views.weak, x[2] + 1) and torch.equal(views.strong, x[2] * 2) and views.sample_index == 2
    view = PseudoLabeledDataset([[x[0]], (x[1], 0)], [0, 1], [0, 0])  # a list of one is the inputs too
    assert torch.equal(view[0][0], x[0])
    with pytest.raises(TypeError, match="but item 1 is a tuple of 2; wrap a labeled dataset in UnlabeledDataset"):
        view[1]
