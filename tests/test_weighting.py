"""SoftMatch's truncated-Gaussian weights: by hand, through the loss, across processes, state."""

import math

import pytest
import torch
import torch.nn.functional as F

from ignite_pseudolabel import DistributionAlignment, PseudoLabelLoss
from ignite_pseudolabel.batch import SemiSupervisedTarget
from ignite_pseudolabel.labels import AlignedLabels
from ignite_pseudolabel.weighting import SoftMatchWeights


def test_weights_by_hand_with_momentum():
    policy = SoftMatchWeights(4, momentum=0.5, n_sigma=2.0)
    probs = torch.tensor([[0.7, 0.1, 0.1, 0.1], [0.4, 0.3, 0.2, 0.1], [0.25, 0.25, 0.25, 0.25]])
    valid = torch.tensor([True, True, False])  # the last row enters no statistic and gets weight 0
    weights = policy(probs, valid)
    batch_mean, batch_var = 0.55, ((0.7 - 0.55) ** 2 + (0.4 - 0.55) ** 2) / 1  # unbiased, n = 2
    mean = 0.5 * 0.25 + 0.5 * batch_mean  # starts at 1 / num_classes
    var = 0.5 * 1.0 + 0.5 * batch_var  # starts at 1
    assert policy.mean.item() == pytest.approx(mean) and policy.variance.item() == pytest.approx(var)
    expected = [1.0, math.exp(-((0.4 - mean) ** 2) / (2 * var / 4)), 0.0]
    assert weights.tolist() == pytest.approx(expected, rel=1e-5)
    assert weights.dtype == torch.float32


def test_too_few_valid_predictions_leave_the_statistics_unchanged():
    policy = SoftMatchWeights(2, momentum=0.0)
    policy(torch.tensor([[0.9, 0.1], [0.6, 0.4]]), torch.tensor([True, False]))
    assert policy.mean.item() == pytest.approx(0.5) and policy.variance.item() == 1.0


def test_through_the_loss_the_weights_scale_each_cross_entropy():
    torch.manual_seed(0)
    y_pred = (torch.randn(2 + 2 * 5, 3) * 2).requires_grad_()
    target = SemiSupervisedTarget(torch.tensor([0, 1]), num_views=2)
    loss_fn = PseudoLabelLoss(SoftMatchWeights(3, momentum=0.0), alpha=1.0)
    value = loss_fn(y_pred, target)
    weak, strong = y_pred[2:7].detach().softmax(1), y_pred[7:]
    conf = weak.max(1).values
    mean, var = conf.mean(), conf.var()
    weights = torch.exp(-((conf - mean).clamp(max=0) ** 2) / (2 * var / 4))
    assert 0 < weights.min() < 1 and weights.max() == 1  # a soft weighting, not a mask
    pseudo = (F.cross_entropy(strong, weak.argmax(1), reduction="none") * weights).mean()
    assert torch.allclose(loss_fn.components["pseudo_loss"], pseudo)
    assert torch.allclose(loss_fn.components["pseudo_mask_rate"], weights.mean())  # the mean weight
    assert torch.allclose(value, F.cross_entropy(y_pred[:2], torch.tensor([0, 1])) + pseudo)
    value.backward()
    assert torch.isfinite(y_pred.grad).all() and y_pred.grad[2:7].eq(0).all()


def test_labels_from_the_unaligned_probabilities_as_usb():
    # unlabeled rows [0.9, 0.1] and [0.6, 0.4]; uniform alignment (momentum 0: running = [0.75, 0.25]) makes
    # them [0.75, 0.25] and [1/3, 2/3]: the weights come from the aligned beliefs, the labels from the raw argmax
    y_pred = torch.log(torch.tensor([[0.5, 0.5], [0.9, 0.1], [0.6, 0.4]]))
    target = SemiSupervisedTarget(torch.tensor([0]))
    source = AlignedLabels(DistributionAlignment(2, momentum=0.0), targets_from_aligned=False)
    loss_fn = PseudoLabelLoss(SoftMatchWeights(2, momentum=0.0), alpha=1.0, labels=source)
    loss_fn(y_pred, target)
    conf = torch.tensor([0.75, 2 / 3])
    weights = torch.exp(-((conf - conf.mean()).clamp(max=0) ** 2) / (2 * conf.var() / 4))
    assert weights[1].item() == pytest.approx(math.exp(-1), rel=1e-4)
    expected = (F.cross_entropy(y_pred[1:], torch.tensor([0, 0]), reduction="none") * weights).mean()
    assert torch.allclose(loss_fn.components["pseudo_loss"], expected, atol=1e-6)
    aligned_labels = PseudoLabelLoss(SoftMatchWeights(2, momentum=0.0), alpha=1.0,
                                     labels=AlignedLabels(DistributionAlignment(2, momentum=0.0)))
    aligned_labels(y_pred, target)
    expected = (F.cross_entropy(y_pred[1:], torch.tensor([0, 1]), reduction="none") * weights).mean()
    assert torch.allclose(aligned_labels.components["pseudo_loss"], expected, atol=1e-6)
    assert "labels.alignment.running" in loss_fn.state_dict() and "policy.mean" in loss_fn.state_dict()


def test_distributed_statistics_use_sums_and_counts_of_all_processes(monkeypatch):
    import ignite.distributed as idist

    monkeypatch.setattr(idist, "get_world_size", lambda: 2)
    monkeypatch.setattr(idist, "all_reduce", lambda t: t * 2)  # another process with the same batch
    policy = SoftMatchWeights(2, momentum=0.0)
    policy(torch.tensor([[0.9, 0.1], [0.7, 0.3]]), torch.tensor([True, True]))
    # four confidences 0.9, 0.7, 0.9, 0.7: mean 0.8, unbiased variance 4 * 0.01 / 3
    assert policy.mean.item() == pytest.approx(0.8, rel=1e-6)
    assert policy.variance.item() == pytest.approx(0.04 / 3, rel=1e-5)


def test_state_dict_round_trip_and_validation():
    policy = SoftMatchWeights(3, momentum=0.0)
    policy(torch.tensor([[0.9, 0.05, 0.05], [0.5, 0.3, 0.2]]), torch.tensor([True, True]))
    fresh = SoftMatchWeights(3)
    fresh.load_state_dict(policy.state_dict())
    assert torch.equal(fresh.mean, policy.mean) and torch.equal(fresh.variance, policy.variance)
    assert fresh.class_thresholds.tolist() == pytest.approx([0.7] * 3)
    with pytest.raises(ValueError, match=r"momentum should be a finite number in \[0, 1\), but given 1.0"):
        SoftMatchWeights(3, momentum=1.0)
    with pytest.raises(ValueError, match=r"n_sigma should be a finite number in \(0, inf\), but given 0.0"):
        SoftMatchWeights(3, n_sigma=0.0)
    with pytest.raises(TypeError, match="num_classes should be an integer"):
        SoftMatchWeights(3.0)
