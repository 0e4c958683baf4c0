import math

import pytest
import torch
import torch.nn.functional as F
from ignite.engine import Engine

from ignite_pseudolabel import AlphaRamp, PseudoLabelLoss, SemiSupervisedBatch
from ignite_pseudolabel.batch import SemiSupervisedTarget
from ignite_pseudolabel.losses import hard_pseudo_labels, masked_cross_entropy


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
    assert not any(c.requires_grad for c in loss_fn.components.values() if c is not None)
    assert loss_fn.components["pseudo_accuracy"] is None


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
        ({"threshold": -0.1}, ValueError, r"threshold should be a finite number in \[0, 1\], but given -0.1"),
        ({"threshold": 1.01}, ValueError, r"threshold should be a finite number in \[0, 1\], but given 1.01"),
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
    with pytest.raises(ValueError, match="does not match 2 labels plus 3 pseudo-labeled or unlabeled rows"):
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


# ------------------------------------------------------------------------------- FixMatch and friends
def views_batch(n_l=2, n_u=3, dim=4):
    from ignite_pseudolabel import Views

    labeled = (torch.randn(n_l, dim), torch.arange(n_l) % 3)
    return SemiSupervisedBatch(labeled, unlabeled=Views(torch.randn(n_u, dim), torch.randn(n_u, dim),
                                                        torch.arange(n_u) + 10))


def test_prepare_puts_labeled_weak_then_strong_rows():
    batch = views_batch()
    x, target = PseudoLabelLoss(alpha=1.0).prepare_batch(batch)
    assert x.shape == (8, 4) and target.num_views == 2 and target.sample_index.tolist() == [10, 11, 12]
    assert torch.equal(x[2:5], batch.unlabeled.weak) and torch.equal(x[5:], batch.unlabeled.strong)


def test_fixmatch_term_uses_weak_labels_on_strong_predictions():
    y_pred = torch.randn(8, 3, requires_grad=True)
    target = SemiSupervisedTarget(torch.tensor([0, 1]), views=2, sample_index=torch.tensor([0, 1, 2]))
    loss_fn = PseudoLabelLoss(threshold=0.5, alpha=1.0)
    value = loss_fn(y_pred, target)
    weak, strong = y_pred[2:5].detach(), y_pred[5:]
    conf, labels = weak.softmax(1).max(1)
    mask = conf >= 0.5
    expected_pseudo = (F.cross_entropy(strong, labels, reduction="none") * mask).mean()
    assert torch.allclose(loss_fn.components["pseudo_loss"], expected_pseudo)
    value.backward()
    assert y_pred.grad[2:5].abs().sum() == 0  # no gradient through the weak view


def test_teacher_predicts_the_weak_view_and_only_strong_goes_through_the_student():
    teacher = torch.nn.Linear(4, 3)
    batch = views_batch()
    loss_fn = PseudoLabelLoss(alpha=1.0, teacher=teacher)
    x, target = loss_fn.prepare_batch(batch)
    assert x.shape == (5, 4) and target.num_views == 1
    assert torch.equal(x[2:], batch.unlabeled.strong)
    assert torch.allclose(target.teacher_logits, teacher(batch.unlabeled.weak))
    assert not target.teacher_logits.requires_grad
    y_pred = torch.randn(5, 3)
    loss_fn(y_pred, target)
    expected = F.cross_entropy(y_pred[2:], target.teacher_logits.argmax(1))
    assert torch.allclose(loss_fn.components["pseudo_loss"], expected)
    assert "teacher" not in dict(loss_fn.named_modules())  # the teacher's owner saves it


def test_teacher_on_plain_unlabeled_inputs():
    teacher = torch.nn.Linear(4, 3)
    batch = SemiSupervisedBatch((torch.randn(2, 4), torch.tensor([0, 1])), unlabeled=torch.randn(3, 4))
    x, target = PseudoLabelLoss(alpha=1.0, teacher=teacher).prepare_batch(batch)
    assert x.shape == (5, 4) and target.teacher_logits.shape == (3, 3)


def test_soft_pseudo_labels_with_temperature():
    y_pred = torch.randn(5, 3)
    loss_fn = PseudoLabelLoss(alpha=1.0, temperature=0.5)
    loss_fn(y_pred, SemiSupervisedTarget(torch.tensor([0, 1])))
    probs = y_pred[2:].softmax(1)
    soft = probs**2 / (probs**2).sum(1, keepdim=True)
    expected = -(soft * y_pred[2:].log_softmax(1)).sum(1).mean()
    assert torch.allclose(loss_fn.components["pseudo_loss"], expected, atol=1e-6)


def test_small_temperature_with_many_classes_gives_a_finite_loss_at_initialisation():
    from ignite_pseudolabel import FreeMatchThreshold

    # an untrained model predicts nearly uniformly: p^(1/T) ~ (1e-3)^20 underflowed to 0 / 0 = NaN
    y_pred = (0.01 * torch.randn(4 + 2 * 8, 1000)).requires_grad_()
    loss_fn = PseudoLabelLoss(FreeMatchThreshold(1000), temperature=0.05, alpha=1.0)
    value = loss_fn(y_pred, SemiSupervisedTarget(torch.arange(4), views=2))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(y_pred.grad).all()
    assert loss_fn.components["pseudo_mask_rate"].item() == 1.0  # thresholds start at 1 / 1000
    assert torch.isfinite(loss_fn.components["pseudo_loss"]) and loss_fn.components["pseudo_loss"] > 0


def test_distribution_alignment_changes_labels_and_masks():
    from ignite_pseudolabel import DistributionAlignment

    # the model favours class 0 on every sample; alignment towards uniform flips the least sure one
    y_pred = torch.log(torch.tensor([[0.5, 0.5], [0.9, 0.1], [0.55, 0.45]]))
    target = SemiSupervisedTarget(torch.tensor([0]))
    plain = PseudoLabelLoss(alpha=1.0)
    plain(y_pred, target)
    aligned = PseudoLabelLoss(alpha=1.0, alignment=DistributionAlignment(2, momentum=0.0))
    aligned(y_pred, target)
    running = torch.tensor([0.725, 0.275])
    probs = torch.tensor([[0.9, 0.1], [0.55, 0.45]]) * 0.5 / running
    labels = probs.argmax(1)
    assert labels.tolist() == [0, 1]
    assert torch.allclose(aligned.components["pseudo_loss"], F.cross_entropy(y_pred[1:], labels))


def test_pseudo_accuracy_against_held_back_targets():
    y_pred = torch.tensor([[0.0, 0.0], [9.0, 0.0], [0.0, 9.0], [9.0, 0.0], [0.0, 0.1]] + [[0.0, 0.0]] * 4)
    target = SemiSupervisedTarget(torch.tensor([0]), views=2, sample_index=torch.tensor([3, 1, 0, 2]))
    loss_fn = PseudoLabelLoss(threshold=0.9, alpha=1.0, held_back_targets=torch.tensor([0, 1, 1, 0]))
    loss_fn(y_pred, target)
    # weak predictions: rows 1..4 -> labels [0, 1, 0, 1], used [T, T, T, F]; truths of [3, 1, 0, 2] = [0, 1, 0, 1]
    assert loss_fn.components["pseudo_accuracy"].item() == 1.0
    loss_fn = PseudoLabelLoss(threshold=0.9, alpha=1.0, held_back_targets=torch.tensor([1, 1, 1, 1]))
    loss_fn(y_pred, target)
    assert loss_fn.components["pseudo_accuracy"].item() == pytest.approx(1 / 3)


def test_policy_object_and_dense_freematch():
    from ignite_pseudolabel import FlexMatchThreshold, FreeMatchThreshold

    y_pred = torch.randn(2 + 2 * 2, 3, 4, 4, requires_grad=True)
    target = SemiSupervisedTarget(torch.randint(0, 3, (2, 4, 4)), views=2, sample_index=torch.tensor([0, 1]))
    loss_fn = PseudoLabelLoss(FreeMatchThreshold(3, momentum=0.0), alpha=1.0)
    loss_fn(y_pred, target).backward()
    weak = y_pred[2:4].detach().softmax(1)
    tau = weak.amax(1).mean()
    p = weak.mean((0, 2, 3))
    thresholds = tau * p / p.max()
    mask = weak.amax(1) >= thresholds[weak.argmax(1)]
    assert torch.allclose(loss_fn.components["pseudo_mask_rate"], mask.float().mean())
    assert torch.isfinite(y_pred.grad).all()
    flex = PseudoLabelLoss(FlexMatchThreshold(0.9, num_classes=3, num_unlabeled=5), alpha=1.0)
    with pytest.raises(ValueError, match=r"works on \(N, C\) predictions only"):
        flex(y_pred, target)


def test_non_finite_weak_predictions_are_left_out_of_the_statistics():
    from ignite_pseudolabel import FreeMatchThreshold

    y_pred = torch.tensor([[0.0, 0.0], [4.0, 0.0], [math.nan, 0.0], [0.0, 0.0], [0.0, 0.0]])
    loss_fn = PseudoLabelLoss(FreeMatchThreshold(2, momentum=0.0), alpha=1.0)
    value = loss_fn(y_pred, SemiSupervisedTarget(torch.tensor([0]), views=2))
    assert torch.isfinite(value)
    assert loss_fn.policy.global_threshold.item() == pytest.approx(torch.tensor([4.0, 0.0]).softmax(0).max().item())


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"temperature": 0.0}, ValueError, r"temperature should be a finite number in \(0, 1\]"),
        ({"temperature": 2.0}, ValueError, r"temperature should be a finite number in \(0, 1\]"),
        ({"alignment": "uniform"}, TypeError, "alignment should be a DistributionAlignment"),
        ({"fairness": 0.01}, TypeError, "fairness should be a SelfAdaptiveFairness, but given float"),
        ({"teacher": 3}, TypeError, "teacher should be a model"),
        ({"held_back_targets": torch.rand(3)}, ValueError, "held_back_targets should be a 1-D tensor of integer"),
    ],
)
def test_option_validation(kwargs, error, match):
    with pytest.raises(error, match=match):
        PseudoLabelLoss(**kwargs)


def test_class_count_that_disagrees_with_the_model_is_a_clear_error():
    from ignite_pseudolabel import DistributionAlignment, FreeMatchThreshold

    target = SemiSupervisedTarget(torch.tensor([0]))
    with pytest.raises(ValueError, match="outputs 3 classes, but the threshold policy FreeMatchThreshold was built "
                                         "for num_classes=10"):
        PseudoLabelLoss(FreeMatchThreshold(10), alpha=1.0)(torch.randn(3, 3), target)
    with pytest.raises(ValueError, match="alignment DistributionAlignment was built for num_classes=4"):
        PseudoLabelLoss(alignment=DistributionAlignment(4), alpha=1.0)(torch.randn(3, 3), target)


def test_non_finite_student_or_mined_rows_are_left_out_instead_of_turning_the_loss_nan():
    # FixMatch: the weak view (source) is fine and confident, the strong view (student) is NaN
    y_pred = torch.tensor([[0.0, 0.0], [9.0, 0.0], [9.0, 0.0], [math.nan, 0.0], [0.0, 1.0]], requires_grad=True)
    loss_fn = PseudoLabelLoss(threshold=0.5, alpha=1.0)
    value = loss_fn(y_pred, SemiSupervisedTarget(torch.tensor([0]), views=2))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(y_pred.grad).all()
    assert loss_fn.components["pseudo_mask_rate"].item() == 0.5
    # mined rows
    y_pred = torch.tensor([[0.0, 0.0], [math.inf, 0.0], [1.0, 0.0]], requires_grad=True)
    loss_fn = PseudoLabelLoss(alpha=1.0)
    value = loss_fn(y_pred, SemiSupervisedTarget(torch.tensor([0]), pseudo_labels=torch.tensor([0, 0])))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(y_pred.grad).all()
    expected = F.cross_entropy(y_pred[:1], torch.tensor([0])) + F.cross_entropy(y_pred[2:], torch.tensor([0])) / 2
    assert torch.allclose(value, expected) and loss_fn.components["pseudo_mask_rate"].item() == 0.5


# ------------------------------------------------------------------------------------ fairness (FreeMatch)
def test_self_adaptive_fairness_by_hand():
    from ignite_pseudolabel.losses import self_adaptive_fairness

    # strong-view probabilities of the used rows [0.8, 0.2] and [0.3, 0.7]: p_bar = [0.55, 0.45], h_bar = [0.5, 0.5]
    logits = torch.tensor([[0.8, 0.2], [0.3, 0.7], [math.nan, 0.0]]).log().requires_grad_()
    p_model, h_model = torch.tensor([0.3, 0.2]), torch.tensor([0.25, 0.25])  # SumNorm(p~ / h~) = [0.6, 0.4]
    value = self_adaptive_fairness(logits, torch.tensor([True, True, False]), p_model, h_model)
    expected = 0.6 * math.log(0.55) + 0.4 * math.log(0.45)
    assert value.item() == pytest.approx(expected, rel=1e-5)
    value.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad[:2].abs().sum() > 0 and logits.grad[2].eq(0).all()
    # a class missing from a histogram gets weight 0 (USB: 1e-12 inside the log)
    one_class = self_adaptive_fairness(logits.detach()[:1], torch.tensor([True]), p_model, torch.tensor([1.0, 0.0]))
    assert one_class.item() == pytest.approx(0.0, abs=1e-6)  # [1, 0] . log([1, 1e-12])
    # no used row: 0, and a finite (zero) gradient
    logits.grad = None
    empty = self_adaptive_fairness(logits, torch.zeros(3, dtype=torch.bool), p_model, h_model)
    empty.backward()
    assert empty.item() == 0.0 and logits.grad.eq(0).all()
    with pytest.raises(ValueError, match=r"\(M, C\) logits and an \(M,\) mask"):
        self_adaptive_fairness(torch.randn(2, 3, 4), torch.ones(2, dtype=torch.bool), p_model, h_model)


def fairness_setup(weight, momentum=0.0, threshold=0.6):
    from ignite_pseudolabel import SelfAdaptiveFairness

    torch.manual_seed(3)
    y_pred = torch.randn(2 + 2 * 6, 3) * 2
    y_pred = y_pred.requires_grad_()
    fairness = None if weight is None else SelfAdaptiveFairness(3, weight=weight, momentum=momentum)
    loss_fn = PseudoLabelLoss(threshold, alpha=2.0, fairness=fairness)
    return y_pred, loss_fn, SemiSupervisedTarget(torch.tensor([0, 1]), views=2)


def test_fairness_term_in_the_loss():
    y_pred, plain, target = fairness_setup(None)
    base = plain(y_pred, target)
    y_pred, loss_fn, target = fairness_setup(0.5)
    value = loss_fn(y_pred, target)
    weak, strong = y_pred[2:8].detach().softmax(1), y_pred[8:]
    mask = weak.amax(1) >= 0.6
    assert 0 < mask.sum() < 6
    # momentum 0: the statistics are this batch's weak-view mean and histogram
    p_model, h_model = weak.mean(0), F.one_hot(weak.argmax(1), 3).float().mean(0)
    assert torch.allclose(loss_fn.fairness.class_probabilities, p_model)
    assert torch.allclose(loss_fn.fairness.label_histogram, h_model)
    from ignite_pseudolabel.losses import self_adaptive_fairness

    fair = self_adaptive_fairness(strong, mask, p_model, h_model)
    assert torch.isfinite(fair) and fair.item() != 0
    assert torch.allclose(loss_fn.components["fairness_loss"], fair)
    assert torch.allclose(loss_fn.components["pseudo_loss"], plain.components["pseudo_loss"])
    assert torch.allclose(value, base + 2.0 * 0.5 * fair)
    value.backward()
    assert torch.isfinite(y_pred.grad).all()
    assert "fairness.class_probabilities" in loss_fn.state_dict() and "fairness.label_histogram" in loss_fn.state_dict()


def test_fairness_gradient_flows_to_the_strong_view_only_and_zero_weight_changes_nothing():
    y_pred, plain, target = fairness_setup(None)
    base = plain(y_pred, target)
    base.backward()
    base_grad = y_pred.grad.clone()
    y_pred, zero, target = fairness_setup(0.0)
    value = zero(y_pred, target)
    value.backward()
    assert torch.equal(value, base) and torch.equal(y_pred.grad, base_grad)
    assert torch.isfinite(zero.components["fairness_loss"])
    y_pred, weighted, target = fairness_setup(1.0)
    weighted(y_pred, target).backward()
    diff = (y_pred.grad - base_grad).abs().sum(1)
    assert diff[:8].eq(0).all() and diff[8:].sum() > 0  # labeled and weak rows: unchanged


def test_fairness_is_published_only_when_configured_and_is_zero_for_mined_rows():
    from ignite_pseudolabel import SelfAdaptiveFairness

    engine = Engine(lambda e, b: None)
    loss_fn = PseudoLabelLoss(alpha=1.0, fairness=SelfAdaptiveFairness(3))
    loss_fn.attach(engine)
    assert engine.state.fairness_loss is None
    y_pred = torch.randn(4, 3)
    value = loss_fn(y_pred, target(1, pseudo=torch.tensor([2, 2, 0])))
    assert loss_fn.components["fairness_loss"].item() == 0.0
    assert torch.allclose(value, PseudoLabelLoss(alpha=1.0)(y_pred, target(1, pseudo=torch.tensor([2, 2, 0]))))
    loss_fn._publish(engine)
    assert engine.state.fairness_loss is loss_fn.components["fairness_loss"]
    plain_engine = Engine(lambda e, b: None)
    PseudoLabelLoss(alpha=1.0).attach(plain_engine)
    assert not hasattr(plain_engine.state, "fairness_loss")


def test_fairness_validation_and_class_count():
    from ignite_pseudolabel import SelfAdaptiveFairness

    with pytest.raises(ValueError, match=r"weight should be a finite number in \[0, inf\), but given -0.1"):
        SelfAdaptiveFairness(3, weight=-0.1)
    with pytest.raises(ValueError, match=r"momentum should be a finite number in \[0, 1\)"):
        SelfAdaptiveFairness(3, momentum=1.0)
    with pytest.raises(TypeError, match="num_classes should be an integer"):
        SelfAdaptiveFairness(3.0)
    with pytest.raises(ValueError, match="fairness SelfAdaptiveFairness was built for num_classes=4"):
        PseudoLabelLoss(alpha=1.0, fairness=SelfAdaptiveFairness(4))(torch.randn(3, 3), target(1))


def test_fairness_statistics_are_reduced_over_the_processes(monkeypatch):
    import ignite.distributed as idist

    from ignite_pseudolabel import SelfAdaptiveFairness

    reduced = []

    def all_reduce(t):
        reduced.append(t.shape)
        return t * 2  # another process with the same batch

    monkeypatch.setattr(idist, "get_world_size", lambda: 2)
    monkeypatch.setattr(idist, "all_reduce", all_reduce)
    fairness = SelfAdaptiveFairness(2, momentum=0.0)
    weak = torch.tensor([[0.9, 0.1], [0.4, 0.6]])
    fairness(weak, torch.tensor([True, True]), torch.randn(2, 2), torch.tensor([True, True]))
    assert reduced == [torch.Size([2, 4])]  # one reduction for the probabilities and the histogram
    assert fairness.class_probabilities.tolist() == pytest.approx([0.65, 0.35])
    assert fairness.label_histogram.tolist() == pytest.approx([0.5, 0.5])


def test_masked_cross_entropy_with_valid_averages_over_the_valid_predictions_only():
    from ignite_pseudolabel.losses import masked_soft_cross_entropy

    logits, labels = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    mask, valid = torch.tensor([True, True, False, True]), torch.tensor([True, False, True, True])
    value = masked_cross_entropy(logits, labels, mask, valid=valid)
    keep = mask & valid
    assert torch.allclose(value, F.cross_entropy(logits[keep], labels[keep], reduction="sum") / 3)
    assert torch.allclose(masked_cross_entropy(logits, labels, mask, valid=torch.ones(4, dtype=torch.bool)),
                          masked_cross_entropy(logits, labels, mask))  # all valid: the default average
    assert masked_cross_entropy(logits, labels, mask, valid=torch.zeros(4, dtype=torch.bool)).item() == 0.0
    targets = torch.rand(4, 3).softmax(1)
    assert torch.allclose(masked_soft_cross_entropy(logits, targets, mask, valid=valid),
                          masked_soft_cross_entropy(logits[valid], targets[valid], mask[valid]))
    # Dense predictions: a per-sample mask broadcasts over the elements, a per-element mask is used as is.
    dense, dense_labels, dense_mask = torch.randn(2, 3, 4, 5), torch.randint(0, 3, (2, 4, 5)), torch.rand(2, 4, 5) > 0.3
    per_sample = masked_cross_entropy(dense, dense_labels, dense_mask, valid=torch.tensor([True, False]))
    assert torch.allclose(per_sample, masked_cross_entropy(dense[:1], dense_labels[:1], dense_mask[:1]))
    per_element = torch.tensor([True, False]).view(2, 1, 1).expand(2, 4, 5)
    assert torch.equal(per_sample, masked_cross_entropy(dense, dense_labels, dense_mask, valid=per_element))
    for bad in (torch.ones(3, dtype=torch.bool), torch.ones(4)):
        with pytest.raises(ValueError, match=r"Argument valid should be a bool tensor of shape \(4,\)"):
            masked_cross_entropy(logits, labels, mask, valid=bad)


def _invalid_rows_setup(mode, rows):
    """(y_pred, target) with the unlabeled samples `rows` (a bool mask over 5 samples) and 2 labeled rows."""
    g = torch.Generator().manual_seed(3)
    labeled, labels = torch.randn(2, 3, generator=g), torch.tensor([0, 2])
    weak, strong = torch.randn(5, 3, generator=g) * 3, torch.randn(5, 3, generator=g) * 3
    weak[1], strong[1] = 0.0, 0.0  # what the zeroed inputs of an invalid sample may give
    if mode == "lee":
        return torch.cat([labeled, strong[rows]]), SemiSupervisedTarget(labels)
    if mode == "views":
        return torch.cat([labeled, weak[rows], strong[rows]]), SemiSupervisedTarget(labels, views=2)
    if mode == "teacher":
        return torch.cat([labeled, strong[rows]]), SemiSupervisedTarget(labels, teacher_logits=weak[rows])
    return torch.cat([labeled, strong[rows]]), SemiSupervisedTarget(labels, torch.tensor([0, 1, 2, 1, 0])[rows])


@pytest.mark.parametrize("mode", ["lee", "views", "teacher", "mined"])
def test_invalid_unlabeled_samples_count_as_if_they_were_not_in_the_batch(mode):
    from ignite_pseudolabel import DistributionAlignment, FreeMatchThreshold, SelfAdaptiveFairness

    def make():
        return PseudoLabelLoss(FreeMatchThreshold(3, momentum=0.5), alpha=1.0, temperature=None,
                               alignment=DistributionAlignment(3, momentum=0.5),
                               fairness=SelfAdaptiveFairness(3, momentum=0.5))

    valid = torch.tensor([True, False, True, True, True])
    with_invalid, without = make(), make()
    y_pred, target = _invalid_rows_setup(mode, torch.ones(5, dtype=torch.bool))
    y_pred.requires_grad_(True)
    value = with_invalid(y_pred, target._replace(unlabeled_valid=valid))
    value.backward()
    expected = without(*_invalid_rows_setup(mode, valid))
    assert torch.allclose(value, expected)
    for (name, a), (_, b) in zip(with_invalid.named_buffers(), without.named_buffers()):
        assert torch.allclose(a.float(), b.float()), name  # the invalid sample entered no statistic
    assert with_invalid.components["pseudo_non_finite_inputs"].item() == 1.0
    assert without.components["pseudo_non_finite_inputs"].item() == 0.0
    rows = y_pred.shape[0] - 2
    invalid_rows = [2 + 1, 2 + 1 + rows // 2] if mode == "views" else [2 + 1]
    assert y_pred.grad[invalid_rows].eq(0).all()  # no gradient through the invalid sample's predictions
    # the mask rate is over all predictions: the invalid one counts as unused
    assert with_invalid.components["pseudo_mask_rate"].item() == pytest.approx(
        without.components["pseudo_mask_rate"].item() * 4 / 5)


def test_invalid_samples_of_dense_predictions_and_per_element_validity():
    y_pred = torch.randn(3, 3, 4, 4)
    target = SemiSupervisedTarget(torch.randint(0, 3, (1, 4, 4)))
    loss_fn = PseudoLabelLoss(alpha=1.0, supervised_loss=lambda logits, labels: logits.sum() * 0.0)
    per_sample = loss_fn(y_pred, target._replace(unlabeled_valid=torch.tensor([True, False])))
    assert torch.allclose(per_sample, loss_fn(y_pred[:2], target))
    per_element = torch.ones(2, 4, 4, dtype=torch.bool)
    per_element[1] = False
    assert torch.allclose(loss_fn(y_pred, target._replace(unlabeled_valid=per_element)), per_sample)
    assert loss_fn.components["pseudo_non_finite_inputs"].item() == 1.0
    per_element[0, 0, 0] = False  # a sample with some invalid elements (padding) is not left out
    loss_fn(y_pred, target._replace(unlabeled_valid=per_element))
    assert loss_fn.components["pseudo_non_finite_inputs"].item() == 1.0
    with pytest.raises(ValueError, match=r"Argument valid should be a bool tensor of shape \(2,\)"):
        loss_fn(y_pred, target._replace(unlabeled_valid=torch.ones(3, dtype=torch.bool)))


def test_threshold_zero_uses_every_finite_prediction():
    from ignite_pseudolabel import FixedThreshold

    y_pred = torch.tensor([[0.0, 1.0], [0.1, 0.0], [math.nan, 0.0], [0.0, 0.2]])
    zero, none = PseudoLabelLoss(threshold=0.0, alpha=1.0), PseudoLabelLoss(alpha=1.0)
    assert isinstance(zero.policy, FixedThreshold) and zero.threshold == 0.0
    assert torch.equal(zero(y_pred, target(1)), none(y_pred, target(1)))
    assert zero.components["pseudo_mask_rate"].item() == pytest.approx(2 / 3)


def test_the_count_of_invalid_samples_is_summed_over_the_processes(monkeypatch):
    import ignite.distributed as idist

    monkeypatch.setattr(idist, "get_world_size", lambda: 2)
    monkeypatch.setattr(idist, "all_reduce", lambda t: t * 2)  # another process with the same batch
    loss_fn = PseudoLabelLoss(alpha=1.0)
    loss_fn(torch.randn(5, 3), target(1)._replace(unlabeled_valid=torch.tensor([True, False, True, False])))
    assert loss_fn.components["pseudo_non_finite_inputs"].item() == 4.0  # 2 per process, summed
    assert loss_fn.components["pseudo_mask_rate"].item() == pytest.approx(0.5)  # averaged


def test_the_warning_reads_the_count_once_per_epoch_and_stops_after_warning():
    counts = iter([0, 0, 0, 2, 1, 0, 3, 3, 3])  # invalid samples of each iteration, three per epoch
    loss_fn = PseudoLabelLoss(alpha=1.0)

    def step(engine, batch):
        valid = torch.arange(4) >= next(counts)
        return loss_fn(torch.randn(5, 3), target(1)._replace(unlabeled_valid=valid))

    engine = Engine(step)
    loss_fn.attach(engine)
    with pytest.warns(RuntimeWarning) as caught:
        engine.run([0] * 3, max_epochs=3)
    messages = [str(w.message) for w in caught if "PseudoLabelLoss" in str(w.message)]
    assert len(messages) == 1 and messages[0].startswith(
        "PseudoLabelLoss: 3 unlabeled or pseudo-labeled samples in epoch 2 had non-finite inputs")
    assert engine.state.pseudo_non_finite_inputs.item() == 3.0
    assert loss_fn._left_out_in_epoch is None  # nothing accumulates once it has warned
