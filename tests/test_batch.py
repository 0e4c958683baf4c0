"""The batch module: what a semi-supervised batch holds and how it becomes one forward pass."""

import pytest
import torch

import ignite_pseudolabel
from ignite_pseudolabel import SemiSupervisedBatch, Views
from ignite_pseudolabel.batch import SemiSupervisedTarget, prepare_semi_supervised_batch


def test_prepare_concatenates_labeled_first_and_builds_the_target():
    lab = (torch.ones(2, 3), torch.tensor([0, 1]))
    x, target = prepare_semi_supervised_batch(SemiSupervisedBatch(lab, unlabeled=torch.zeros(4, 3)))
    assert x.shape == (6, 3) and x[:2].eq(1).all() and x[2:].eq(0).all()
    assert isinstance(target, SemiSupervisedTarget) and target.pseudo_labels is None
    x, target = prepare_semi_supervised_batch(SemiSupervisedBatch(lab, pseudo=(torch.zeros(1, 3), torch.tensor([2]))))
    assert x.shape == (3, 3) and target.pseudo_labels.tolist() == [2]
    x, target = prepare_semi_supervised_batch(SemiSupervisedBatch(lab, unlabeled=[torch.zeros(4, 3)]))
    assert x.shape == (6, 3)  # TensorDataset(x) batches are one-element lists
    x, target = prepare_semi_supervised_batch(SemiSupervisedBatch(lab, unlabeled=torch.zeros(4, 3)), use_second=False)
    assert x.shape == (2, 3) and target.labels.tolist() == [0, 1]


@pytest.mark.parametrize(
    "batch, error, match",
    [
        ((torch.ones(2, 3), torch.tensor([0, 1])), TypeError, "Expected a SemiSupervisedBatch"),
        (SemiSupervisedBatch(torch.ones(2, 3), unlabeled=torch.ones(2, 3)), TypeError,
         "labeled batch should be an \\(inputs, labels\\) pair, but given a Tensor"),
        (SemiSupervisedBatch((torch.ones(2, 3), torch.ones(2)), unlabeled=(torch.ones(2, 3), torch.ones(2))),
         TypeError, "unlabeled batch should hold inputs only, but given a tuple of 2"),
        (SemiSupervisedBatch((torch.ones(2, 3), torch.ones(2)), pseudo=torch.ones(2, 3)), TypeError,
         "pseudo-labeled batch should be an \\(inputs, labels\\) pair"),
        (SemiSupervisedBatch((torch.ones(2, 3), torch.ones(2)), unlabeled=torch.ones(2, 4)), ValueError,
         "per-sample shape \\(3,\\)"),
        (SemiSupervisedBatch((torch.ones(2, 3), torch.ones(2)), unlabeled=torch.ones(2, 3, dtype=torch.float64)),
         ValueError, "dtype torch.float32"),
    ],
)
def test_prepare_rejects_wrong_batch_structure(batch, error, match):
    with pytest.raises(error, match=match):
        prepare_semi_supervised_batch(batch)


def test_views_become_weak_then_strong_rows_and_a_teacher_replaces_the_weak_rows():
    labeled = (torch.ones(2, 3), torch.tensor([0, 1]))
    views = Views(torch.zeros(4, 3), torch.full((4, 3), 2.0), torch.arange(4))
    x, target = prepare_semi_supervised_batch(SemiSupervisedBatch(labeled, unlabeled=views))
    assert x[:, 0].tolist() == [1, 1, 0, 0, 0, 0, 2, 2, 2, 2]
    assert target.views == 2 and target.teacher_logits is None and target.sample_index.tolist() == [0, 1, 2, 3]

    seen = []

    def teacher(inputs):
        seen.append((inputs.clone(), torch.is_grad_enabled()))
        return torch.zeros(inputs.shape[0], 5)

    x, target = prepare_semi_supervised_batch(SemiSupervisedBatch(labeled, unlabeled=views), teacher=teacher)
    assert x[:, 0].tolist() == [1, 1, 2, 2, 2, 2]  # the student's (strong) rows only
    assert target.views == 1 and target.teacher_logits.shape == (4, 5)
    assert seen[0][0].eq(0).all() and seen[0][1] is False  # the teacher saw the weak view, without gradients


def test_old_import_locations_still_work():
    from ignite_pseudolabel import augment, batch, data

    assert data.SemiSupervisedBatch is batch.SemiSupervisedBatch is ignite_pseudolabel.SemiSupervisedBatch
    assert data.SemiSupervisedTarget is batch.SemiSupervisedTarget
    assert data.prepare_semi_supervised_batch is batch.prepare_semi_supervised_batch
    assert augment.Views is batch.Views is ignite_pseudolabel.Views
    for name in set(batch.__all__) & set(ignite_pseudolabel.__all__):  # the root re-exports, not copies
        assert getattr(ignite_pseudolabel, name) is getattr(batch, name)
