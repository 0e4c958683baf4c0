"""The pseudo-term pipeline: each slot's object is called in order, with what it needs, and nothing else is."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ignite_pseudolabel import FixedThreshold, FreeMatchThreshold, SelfAdaptiveFairness, ThresholdPolicy
from ignite_pseudolabel.labels import SoftLabels
from ignite_pseudolabel.pseudo_term import PseudoTerm
from ignite_pseudolabel.unsupervised import MaskedCrossEntropy, UnsupervisedLoss


class HalfWeights(ThresholdPolicy):
    """Weight 0.5 for every prediction: float weights, no state."""

    def forward(self, probs, valid, index=None):
        return torch.full(valid.shape, 0.5)


class Recorder(UnsupervisedLoss):
    def forward(self, logits, targets, weights, *, valid=None):
        self.seen = (logits, targets, weights, valid)
        return weights.float().sum()


def test_float_weights_reach_the_loss_and_non_finite_students_get_zero():
    source = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    student = torch.tensor([[0.0, 0.0], [math.nan, 0.0], [1.0, 1.0]], requires_grad=True)
    out = PseudoTerm(policy=HalfWeights())(source, student)
    assert out.weights.tolist() == [0.5, 0.0, 0.5] and out.labels.tolist() == [0, 1, 0]
    ce = F.cross_entropy(student.detach()[[0, 2]], torch.tensor([0, 0]), reduction="none")
    assert torch.allclose(out.value, (ce * 0.5).sum() / 3)
    out.value.backward()
    assert torch.isfinite(student.grad).all() and student.grad[1].eq(0).all()


def test_slots_receive_rows_valid_index_and_targets_in_the_student_layout():
    recorder = Recorder()
    source = torch.randn(2, 3, 2, 2)  # dense: one row per pixel for the label source and the policy
    valid = torch.tensor([True, False])
    out = PseudoTerm(SoftLabels(0.5), FixedThreshold(0.0), recorder)(source, torch.randn(2, 3, 2, 2), valid=valid)
    logits, targets, weights, seen_valid = recorder.seen
    assert targets.shape == (2, 3, 2, 2) and weights.shape == (2, 2, 2) and seen_valid.shape == (2, 2, 2)
    assert weights[0].all() and not weights[1].any()  # the invalid sample is never used
    assert torch.allclose(targets.sum(1), torch.ones(2, 2, 2))  # distributions over the class dimension
    assert out.value.item() == 4.0


def test_regularisers_are_added_with_their_weight_and_named_by_their_component():
    fairness = SelfAdaptiveFairness(2, weight=0.25, momentum=0.0)
    term = PseudoTerm(regularisers=[fairness])
    out = term(torch.tensor([[2.0, 0.0], [0.0, 2.0]]), torch.tensor([[1.0, 0.0], [0.0, 0.5]]))
    assert set(out.regularisers) == {"fairness_loss"}
    assert torch.allclose(term.total(out.value, out.regularisers), out.value + 0.25 * out.regularisers["fairness_loss"])


def test_statistics_modules_follow_the_device_and_class_counts_are_checked():
    policy = FreeMatchThreshold(3, momentum=0.0)
    term = PseudoTerm(policy=policy)
    term(torch.randn(4, 3), torch.randn(4, 3))
    assert policy.global_threshold.device.type == "cpu"
    with pytest.raises(ValueError, match="outputs 2 classes, but the threshold policy FreeMatchThreshold was built "
                                         "for num_classes=3"):
        term(torch.randn(4, 2), torch.randn(4, 2))
    with pytest.raises(ValueError, match=r"source predictions have shape \(4, 3\), but the student's have \(5, 3\)"):
        term(torch.randn(4, 3), torch.randn(5, 3))


def test_validation():
    with pytest.raises(TypeError, match="labels should be a LabelSource, but given str"):
        PseudoTerm(labels="hard")
    with pytest.raises(TypeError, match="policy should be a ThresholdPolicy, but given float"):
        PseudoTerm(policy=0.9)
    with pytest.raises(TypeError, match="loss should be a UnsupervisedLoss, but given function"):
        PseudoTerm(loss=F.cross_entropy)
    with pytest.raises(TypeError, match=r"regularisers\[0\] should declare a component name and a weight"):
        PseudoTerm(regularisers=[nn.Identity()])
    assert isinstance(PseudoTerm().loss, MaskedCrossEntropy)
