import math

import pytest
import torch
import torch.nn.functional as F
from ignite.engine import Engine

from ignite_pseudolabel import (
    AlphaRamp,
    PseudoLabelLoss,
    SemiSupervisedBatch,
    SemiSupervisedTarget,
    hard_pseudo_labels,
    masked_cross_entropy,
)


def test_hard_pseudo_labels_threshold_edges():
    probs = torch.tensor([[0.95, 0.05], [0.9, 0.1], [0.2, 0.8]])
    labels, mask = hard_pseudo_labels(probs.log(), threshold=0.9)
    assert labels.tolist() == [0, 0, 1]
    assert mask.tolist() == [True, True, False]  # >= threshold is kept
    _, mask = hard_pseudo_labels(probs.log(), threshold=None)
    assert mask.all()


def test_hard_pseudo_labels_is_detached_and_dense():
    logits = torch.randn(2, 3, 4, 5, requires_grad=True)
    labels, mask = hard_pseudo_labels(logits, threshold=0.5)
    assert labels.shape == mask.shape == (2, 4, 5)
    assert torch.equal(labels, logits.argmax(1)) and not labels.requires_grad
    assert torch.equal(mask, logits.softmax(1).amax(1) >= 0.5)
    with pytest.raises(ValueError, match=r"logits of shape \(N, C, ...\)"):
        hard_pseudo_labels(torch.randn(3))


def test_non_finite_predictions_are_never_used():
    logits = torch.tensor([[10.0, 0.0], [math.inf, 0.0], [math.nan, 1.0], [0.0, -math.inf]])
    _, mask = hard_pseudo_labels(logits)
    assert mask.tolist() == [True, False, False, False]


def test_masked_cross_entropy_matches_manual_value_and_normalises_by_all():
    logits = torch.randn(6, 4)
    labels = torch.randint(0, 4, (6,))
    mask = torch.tensor([1, 0, 1, 1, 0, 0], dtype=torch.bool)
    expected = F.cross_entropy(logits, labels, reduction="none")[mask].sum() / 6
    assert torch.allclose(masked_cross_entropy(logits, labels, mask), expected)
    assert masked_cross_entropy(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long),
                                torch.zeros(0, dtype=torch.bool)).item() == 0.0


def test_masked_out_nan_rows_give_neither_nan_loss_nor_nan_gradient():
    logits = torch.tensor([[1.0, 2.0], [math.nan, 0.0], [math.inf, 1.0]], requires_grad=True)
    labels, mask = hard_pseudo_labels(logits)
    loss = masked_cross_entropy(logits, labels, mask)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    assert logits.grad[1:].eq(0).all()


def target(n_labeled, pseudo=None):
    return SemiSupervisedTarget(torch.arange(n_labeled) % 3, pseudo)


def test_online_loss_is_supervised_plus_alpha_times_pseudo():
    y_pred = torch.randn(5, 3, requires_grad=True)
    loss_fn = PseudoLabelLoss(alpha=2.0)
    value = loss_fn(y_pred, target(2))
    sup = F.cross_entropy(y_pred[:2], torch.tensor([0, 1]))
    pseudo = F.cross_entropy(y_pred[2:], y_pred[2:].argmax(1))
    assert torch.allclose(value, sup + 2.0 * pseudo)
    assert torch.allclose(loss_fn.components["supervised_loss"], sup)
    assert torch.allclose(loss_fn.components["pseudo_loss"], pseudo)
    assert loss_fn.components["pseudo_mask_rate"].item() == 1.0
    assert not any(c.requires_grad for c in loss_fn.components.values())


def test_online_threshold_masks_and_reports_the_rate():
    y_pred = torch.tensor([[0.0, 0.0], [5.0, 0.0], [0.0, 0.0], [0.0, 5.0], [0.1, 0.0]])
    loss_fn = PseudoLabelLoss(threshold=0.9, alpha=1.0)
    loss_fn(y_pred, SemiSupervisedTarget(torch.tensor([0])))
    assert loss_fn.components["pseudo_mask_rate"].item() == 0.5
    expected = F.cross_entropy(y_pred[[1, 3]], torch.tensor([0, 1]), reduction="sum") / 4
    assert torch.allclose(loss_fn.components["pseudo_loss"], expected)


def test_mined_loss_uses_the_given_pseudo_labels():
    y_pred = torch.randn(4, 3)
    value = PseudoLabelLoss(alpha=0.5)(y_pred, target(1, pseudo=torch.tensor([2, 2, 0])))
    expected = F.cross_entropy(y_pred[:1], torch.tensor([0])) + 0.5 * F.cross_entropy(y_pred[1:],
                                                                                     torch.tensor([2, 2, 0]))
    assert torch.allclose(value, expected)


def test_labeled_only_batch_and_zero_alpha_give_the_supervised_loss():
    y_pred = torch.randn(3, 3)
    sup = F.cross_entropy(y_pred, torch.tensor([0, 1, 2]))
    loss_fn = PseudoLabelLoss(alpha=1.0)
    assert torch.allclose(loss_fn(y_pred, target(3)), sup)
    assert loss_fn.components["pseudo_mask_rate"].item() == 0.0
    y_pred = torch.cat([y_pred, torch.full((2, 3), math.nan)])
    assert torch.allclose(PseudoLabelLoss(alpha=0.0)(y_pred, target(3)), sup)


def test_dense_logits_for_segmentation():
    y_pred = torch.randn(3, 4, 5, 5, requires_grad=True)
    labels = torch.randint(0, 4, (1, 5, 5))
    loss_fn = PseudoLabelLoss(threshold=0.4, alpha=1.0)
    value = loss_fn(y_pred, SemiSupervisedTarget(labels))
    value.backward()
    rate = (y_pred[1:].softmax(1).amax(1) >= 0.4).float().mean()
    assert torch.allclose(loss_fn.components["pseudo_mask_rate"], rate)
    assert torch.isfinite(y_pred.grad).all()


def test_custom_supervised_loss():
    y_pred = torch.randn(2, 3)
    loss_fn = PseudoLabelLoss(alpha=1.0, supervised_loss=torch.nn.CrossEntropyLoss(label_smoothing=0.1))
    loss_fn(y_pred, target(2))
    assert torch.allclose(loss_fn.components["supervised_loss"],
                          F.cross_entropy(y_pred, torch.tensor([0, 1]), label_smoothing=0.1))


def test_alpha_is_read_from_the_attached_engine_and_prepare_skips_unlabeled_at_zero():
    engine = Engine(lambda e, b: None)
    loss_fn = PseudoLabelLoss()
    loss_fn.attach(engine)
    AlphaRamp(t1=1, t2=2, alpha_f=3.0).attach(engine)
    batch = SemiSupervisedBatch((torch.zeros(2, 3), torch.tensor([0, 1])), unlabeled=torch.ones(4, 3))
    seen = []

    def step(e, _):
        x, t = loss_fn.prepare_batch(batch)
        seen.append((e.state.alpha, x.shape[0], loss_fn.current_alpha()))

    engine._process_function = step
    engine.run([0], max_epochs=3)
    assert seen == [(0.0, 2, 0.0), (3.0, 6, 3.0), (3.0, 6, 3.0)]


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"threshold": 0.0}, ValueError, r"threshold should be a finite number in \(0, 1\], but given 0.0"),
        ({"threshold": 1.01}, ValueError, r"threshold should be a finite number in \(0, 1\], but given 1.01"),
        ({"threshold": math.nan}, ValueError, "threshold should be a finite number"),
        ({"alpha": -1}, ValueError, r"alpha should be a finite number in \[0, inf\)"),
        ({"supervised_loss": 3}, TypeError, "supervised_loss should be callable"),
        ({"alpha_name": "a-b"}, ValueError, "alpha_name should be a valid Python identifier"),
    ],
)
def test_argument_validation(kwargs, error, match):
    with pytest.raises(error, match=match):
        PseudoLabelLoss(**kwargs)


def test_threshold_of_one_is_allowed():
    assert PseudoLabelLoss(threshold=1.0).threshold == 1.0


def test_runtime_errors_are_clear():
    loss_fn = PseudoLabelLoss()
    with pytest.raises(RuntimeError, match="give alpha=... or call loss.attach"):
        loss_fn(torch.randn(2, 3), target(1))
    engine = Engine(lambda e, b: None)
    loss_fn.attach(engine)
    with pytest.raises(RuntimeError, match="engine.state.alpha is not set: attach an AlphaRamp"):
        loss_fn(torch.randn(2, 3), target(1))
    with pytest.raises(TypeError, match="Expected a SemiSupervisedTarget"):
        PseudoLabelLoss(alpha=1.0)(torch.randn(2, 3), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"logits of shape \(N, C, ...\), but given \(4,\)"):
        PseudoLabelLoss(alpha=1.0)(torch.randn(4), target(1))
    with pytest.raises(ValueError, match="does not match 2 labels plus 3 pseudo-labels"):
        PseudoLabelLoss(alpha=1.0)(torch.randn(4, 3), target(2, pseudo=torch.tensor([0, 1, 2])))


def test_attach_twice_or_colliding_state_raises():
    engine = Engine(lambda e, b: None)
    loss_fn = PseudoLabelLoss()
    loss_fn.attach(engine)
    with pytest.raises(ValueError, match="already attached"):
        loss_fn.attach(engine)
    with pytest.raises(ValueError, match="'supervised_loss' already exists"):
        PseudoLabelLoss().attach(engine)
    with pytest.raises(TypeError, match="should be an ignite Engine"):
        PseudoLabelLoss().attach("trainer")
