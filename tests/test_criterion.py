"""The engine-free criterion: splitting the rows, the weight as a number or a callable, the statistics record."""

import math

import pytest
import torch
import torch.nn.functional as F

from ignite_pseudolabel import FixedThreshold
from ignite_pseudolabel.batch import SemiSupervisedTarget
from ignite_pseudolabel.criterion import SemiSupervisedLoss, split_rows
from ignite_pseudolabel.pseudo_term import PseudoTerm
from ignite_pseudolabel.weighting import SoftMatchWeights


def test_split_rows_for_each_kind_of_target():
    y_pred = torch.arange(14.0).view(7, 2)
    labels = torch.tensor([0])
    lee = split_rows(y_pred, SemiSupervisedTarget(labels))
    assert lee.source is lee.student and lee.student.shape[0] == 6 and lee.given_labels is None
    views = split_rows(y_pred, SemiSupervisedTarget(labels, num_views=2))
    assert views.source[:, 0].tolist() == [2.0, 4.0, 6.0] and views.student[:, 0].tolist() == [8.0, 10.0, 12.0]
    teacher = torch.zeros(6, 2)
    assert split_rows(y_pred, SemiSupervisedTarget(labels, teacher_logits=teacher)).source is teacher
    mined = split_rows(y_pred, SemiSupervisedTarget(labels, torch.zeros(6, dtype=torch.long)))
    assert mined.source is None and mined.given_labels.shape == (6,)
    mixed = split_rows(y_pred, SemiSupervisedTarget(labels, num_views=2, mix=lambda t: t.flip(0)))
    assert mixed.source[:, 0].tolist() == [6.0, 4.0, 2.0]  # the mix applies to the weak rows' predictions
    with pytest.raises(ValueError, match="7 rows, which does not match 1 labels plus 5 pseudo-labeled"):
        split_rows(y_pred, SemiSupervisedTarget(labels, torch.zeros(5, dtype=torch.long)))
    with pytest.raises(ValueError, match=r"\(2 view\(s\)\)"):
        split_rows(y_pred[:6], SemiSupervisedTarget(labels, num_views=2))


def test_the_weight_is_a_number_or_a_callable_read_at_every_call():
    y_pred = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 0.0]])
    target = SemiSupervisedTarget(torch.tensor([0]))
    supervised = F.cross_entropy(y_pred[:1], torch.tensor([0]))
    weights = iter([0.0, 2.0])
    criterion = SemiSupervisedLoss(weight=lambda: next(weights))
    assert torch.equal(criterion(y_pred, target), supervised)  # weight 0: exactly the supervised loss
    pseudo = F.cross_entropy(y_pred[1:], torch.tensor([0, 0]))
    assert torch.allclose(criterion(y_pred, target), supervised + 2.0 * pseudo)
    assert torch.allclose(criterion.stats.pseudo_loss, pseudo)  # computed while the weight was 0 too


def test_statistics_record_with_weights_and_held_back_accuracy():
    criterion = SemiSupervisedLoss(PseudoTerm(policy=SoftMatchWeights(2, momentum=0.0)),
                                   held_back_targets=torch.tensor([0, 1, 1]))
    y_pred = torch.tensor([[0.0, 0.0], [4.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    criterion(y_pred, SemiSupervisedTarget(torch.tensor([0]), sample_index=torch.tensor([0, 1, 2])))
    stats = criterion.stats
    conf = y_pred[1:].softmax(1).max(1).values
    weights = torch.exp(-((conf - conf.mean()).clamp(max=0) ** 2) / (2 * conf.var() / 4))
    assert torch.allclose(stats.pseudo_mask_rate, weights.mean())
    # labels [0, 1, 0] against truths [0, 1, 1]: the first two are right, weighted
    assert torch.allclose(stats.pseudo_correct, weights[:2].sum()) and torch.allclose(stats.pseudo_used, weights.sum())
    assert stats.pseudo_non_finite_inputs.item() == 0 and stats.regularisers == {}
    assert not any(t.requires_grad for t in stats[:4])


def test_mined_rows_and_left_out_samples():
    criterion = SemiSupervisedLoss(weight=1.0)
    y_pred = torch.tensor([[0.0, 0.0], [2.0, 0.0], [math.inf, 0.0], [1.0, 0.0]])
    target = SemiSupervisedTarget(torch.tensor([0]), torch.tensor([0, 0, 1]),
                                  unlabeled_valid=torch.tensor([True, True, False]))
    value = criterion(y_pred, target)
    expected = F.cross_entropy(y_pred[:1], torch.tensor([0])) + F.cross_entropy(y_pred[1:2], torch.tensor([0])) / 2
    assert torch.allclose(value, expected)  # the non-finite row is unused, the invalid one not even counted
    assert criterion.stats.pseudo_non_finite_inputs.item() == 1 and criterion.stats.pseudo_correct is None


def test_validation():
    with pytest.raises(ValueError, match=r"weight should be a finite number in \[0, inf\), but given -1.0"):
        SemiSupervisedLoss(weight=-1.0)
    with pytest.raises(TypeError, match="supervised_loss should be callable"):
        SemiSupervisedLoss(supervised_loss=3)
    with pytest.raises(TypeError, match="pseudo_term should be a PseudoTerm, but given FixedThreshold"):
        SemiSupervisedLoss(FixedThreshold(0.9))
    with pytest.raises(ValueError, match="held_back_targets should be a 1-D tensor of integer labels"):
        SemiSupervisedLoss(held_back_targets=torch.rand(3))
    with pytest.raises(TypeError, match="Expected a SemiSupervisedTarget"):
        SemiSupervisedLoss()(torch.zeros(2, 2), torch.tensor([0, 1]))
