import ignite.distributed as idist
import pytest
import torch

from ignite_pseudolabel import FixedThreshold, FlexMatchThreshold, FreeMatchThreshold, PseudoLabelLoss


def valid(n):
    return torch.ones(n, dtype=torch.bool)


def test_fixed_threshold_edges_and_invalid_rows():
    policy = FixedThreshold(0.9, num_classes=2)
    probs = torch.tensor([[0.9, 0.1], [0.89, 0.11], [0.95, 0.05]])
    assert policy(probs, torch.tensor([True, True, False])).tolist() == [True, False, False]
    assert policy.class_thresholds.tolist() == pytest.approx([0.9, 0.9])


def test_flexmatch_learning_effect_and_class_thresholds_by_hand():
    policy = FlexMatchThreshold(0.9, num_classes=3, num_unlabeled=6)
    # samples 0, 1 confidently class 0; sample 2 confidently class 1; sample 3 not confident
    probs = torch.tensor([[0.95, 0.03, 0.02], [0.92, 0.04, 0.04], [0.05, 0.93, 0.02], [0.5, 0.3, 0.2]])
    mask = policy(probs, valid(4), torch.tensor([0, 1, 2, 3]))
    # masked with the thresholds before this update (USB): all 0 at the start
    assert mask.tolist() == [True, True, True, True]
    assert policy.selected.tolist() == [0, 0, 1, -1, -1, -1]
    # warm-up: normalised by max(count_c, #unused) = max(2, 1, 0, 3) = 3
    assert policy.learning_effect.tolist() == pytest.approx([2 / 3, 1 / 3, 0.0])
    beta = torch.tensor([2 / 3, 1 / 3, 0.0])
    assert policy.class_thresholds.tolist() == pytest.approx((0.9 * beta / (2 - beta)).tolist())
    # next step: class 0 threshold 0.45, class 1 0.18, class 2 0
    probs = torch.tensor([[0.5, 0.3, 0.2], [0.4, 0.5, 0.1], [0.3, 0.3, 0.4], [0.15, 0.8, 0.05], [0.44, 0.3, 0.26]])
    mask = policy(probs, valid(5), torch.tensor([3, 4, 5, 2, 0]))
    assert mask.tolist() == [True, True, True, True, False]
    assert policy.selected.tolist() == [0, 0, 1, -1, -1, -1]  # nothing >= 0.9: no update


def test_flexmatch_without_warmup_and_other_mappings():
    probs = torch.tensor([[0.95, 0.05], [0.97, 0.03], [0.1, 0.9]])
    policy = FlexMatchThreshold(0.9, num_classes=2, num_unlabeled=10, warmup=False, mapping="linear")
    policy(probs, valid(3), torch.tensor([0, 1, 2]))
    assert policy.learning_effect.tolist() == pytest.approx([1.0, 0.5])
    assert policy.class_thresholds.tolist() == pytest.approx([0.9, 0.45])
    concave = FlexMatchThreshold(0.9, num_classes=2, num_unlabeled=10, warmup=False, mapping="concave")
    concave(probs, valid(3), torch.tensor([0, 1, 2]))
    assert concave.class_thresholds[1].item() == pytest.approx(0.9 * torch.log(torch.tensor(1.5)).item()
                                                               / torch.log(torch.tensor(2.0)).item())


def test_flexmatch_keeps_the_last_confident_class_and_ignores_invalid_rows():
    policy = FlexMatchThreshold(0.9, num_classes=2, num_unlabeled=3)
    policy(torch.tensor([[0.95, 0.05]]), valid(1), torch.tensor([1]))
    policy(torch.tensor([[0.6, 0.4]]), valid(1), torch.tensor([1]))  # not confident: keeps class 0
    assert policy.selected.tolist() == [-1, 0, -1]
    policy(torch.tensor([[0.02, 0.98]]), torch.tensor([False]), torch.tensor([1]))  # invalid: no update
    assert policy.selected.tolist() == [-1, 0, -1]
    policy(torch.tensor([[0.02, 0.98]]), valid(1), torch.tensor([1]))
    assert policy.selected.tolist() == [-1, 1, -1]


def test_flexmatch_mask_uses_the_thresholds_before_the_update():
    policy = FlexMatchThreshold(0.9, num_classes=2, num_unlabeled=3, warmup=False)
    probs = torch.tensor([[0.95, 0.05], [0.97, 0.03], [0.6, 0.4]])
    index = torch.tensor([0, 1, 2])
    assert policy(probs, valid(3), index).tolist() == [True, True, True]
    assert policy.class_thresholds.tolist() == pytest.approx([0.9, 0.0])
    assert policy(probs, valid(3), index).tolist() == [True, True, False]


def flexmatch_after(probs, index, num_unlabeled=4):
    policy = FlexMatchThreshold(0.9, num_classes=3, num_unlabeled=num_unlabeled)
    policy.selected[:] = torch.tensor([2, 2, -1, -1])[:num_unlabeled]
    policy(probs, valid(probs.shape[0]), index)
    return policy.selected.tolist()


def test_flexmatch_duplicated_positions_update_deterministically():
    # sample 0 three times: not confident, confident class 1 (0.92), confident class 0 (0.95);
    # sample 3 twice: confident class 2, then not confident; sample 1 once, not confident
    probs = torch.tensor([[0.5, 0.3, 0.2], [0.04, 0.92, 0.04], [0.95, 0.03, 0.02], [0.02, 0.03, 0.95],
                          [0.2, 0.2, 0.6], [0.4, 0.5, 0.1]])
    index = torch.tensor([0, 0, 0, 3, 3, 1])
    expected = [0, 2, -1, 2]  # the most confident copy wins; any confident copy selects
    assert flexmatch_after(probs, index) == expected
    for seed in range(10):
        order = torch.randperm(6, generator=torch.Generator().manual_seed(seed))
        assert flexmatch_after(probs[order], index[order]) == expected
    # equally confident copies of different classes: the smallest class, whatever the order
    tie = torch.tensor([[0.02, 0.02, 0.96], [0.96, 0.02, 0.02]])
    assert flexmatch_after(tie, torch.tensor([1, 1])) == [2, 0, -1, -1]
    assert flexmatch_after(tie.flip(0), torch.tensor([1, 1])) == [2, 0, -1, -1]


def test_flexmatch_gathers_the_updates_of_every_process(monkeypatch):
    # the other process saw sample 1 confidently as class 2 and sample 0 with a higher confidence as class 1
    other = {torch.int64: torch.tensor([0 * 3 + 1, 1 * 3 + 2]), torch.float32: torch.tensor([0.99, 0.93])}
    gathered = []

    def all_gather(t):
        gathered.append(t.dtype)
        return torch.cat([t, other[t.dtype]])

    monkeypatch.setattr(idist, "get_world_size", lambda: 2)
    monkeypatch.setattr(idist, "all_gather", all_gather)
    policy = FlexMatchThreshold(0.9, num_classes=3, num_unlabeled=3)
    policy(torch.tensor([[0.95, 0.03, 0.02], [0.5, 0.3, 0.2]]), valid(2), torch.tensor([0, 1]))
    assert sorted(map(str, gathered)) == ["torch.float32", "torch.int64"]
    assert policy.selected.tolist() == [1, 2, -1]


def test_flexmatch_requires_positions():
    policy = FlexMatchThreshold(0.9, num_classes=2, num_unlabeled=3)
    with pytest.raises(ValueError, match="needs the positions of the unlabeled samples"):
        policy(torch.tensor([[0.9, 0.1]]), valid(1), None)


def test_freematch_ema_by_hand():
    policy = FreeMatchThreshold(num_classes=2, momentum=0.5)
    assert policy.global_threshold.item() == 0.5 and policy.class_probabilities.tolist() == [0.5, 0.5]
    probs = torch.tensor([[0.9, 0.1], [0.7, 0.3], [0.5, 0.5]])
    mask = policy(probs, torch.tensor([True, True, False]))
    # mean confidence of the valid rows 0.8 -> tau = 0.5 * 0.5 + 0.5 * 0.8
    assert policy.global_threshold.item() == pytest.approx(0.65)
    assert policy.class_probabilities.tolist() == pytest.approx([0.65, 0.35])
    assert policy.class_thresholds.tolist() == pytest.approx([0.65, 0.65 * 0.35 / 0.65])
    assert mask.tolist() == [True, True, False]


def test_freematch_without_valid_rows_keeps_its_statistics():
    policy = FreeMatchThreshold(num_classes=3, momentum=0.9)
    mask = policy(torch.full((2, 3), 1 / 3), torch.tensor([False, False]))
    assert not mask.any() and policy.global_threshold.item() == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    "factory, error, match",
    [
        (lambda: FixedThreshold(-0.1), ValueError, r"threshold should be a finite number in \[0, 1\], but given -0.1"),
        (lambda: FlexMatchThreshold(0, num_classes=2, num_unlabeled=3), ValueError, r"in \(0, 1\], but given 0"),
        (lambda: FlexMatchThreshold(0.9, num_classes=1, num_unlabeled=3), ValueError, "num_classes should be"),
        (lambda: FlexMatchThreshold(0.9, num_classes=2, num_unlabeled=0), ValueError, "num_unlabeled should be"),
        (lambda: FlexMatchThreshold(0.9, num_classes=2, num_unlabeled=3, mapping="cubic"), ValueError,
         "mapping should be one of 'convex', 'linear', 'concave'"),
        (lambda: FreeMatchThreshold(2, momentum=1.0), ValueError, r"momentum should be a finite number in \[0, 1\)"),
    ],
)
def test_argument_validation(factory, error, match):
    with pytest.raises(error, match=match):
        factory()


def test_statistics_round_trip_through_the_loss_state_dict():
    loss = PseudoLabelLoss(FlexMatchThreshold(0.9, num_classes=2, num_unlabeled=4))
    loss.policy(torch.tensor([[0.95, 0.05]]), valid(1), torch.tensor([2]))
    state = loss.state_dict()
    assert set(state) == {"policy.selected", "policy.learning_effect"}
    fresh = PseudoLabelLoss(FlexMatchThreshold(0.9, num_classes=2, num_unlabeled=4))
    fresh.load_state_dict(state)
    assert fresh.policy.selected.tolist() == [-1, -1, 0, -1]
    other = PseudoLabelLoss(FlexMatchThreshold(0.9, num_classes=2, num_unlabeled=5))
    with pytest.raises(RuntimeError, match="size mismatch"):
        other.load_state_dict(state)


# ------------------------------------------------------------------------------------ AdaMatch's relative threshold
def test_relative_threshold_by_hand_through_the_loss():
    import torch.nn.functional as F

    from ignite_pseudolabel import PseudoLabelLoss
    from ignite_pseudolabel.batch import SemiSupervisedTarget
    from ignite_pseudolabel.thresholds import RelativeThreshold

    # labeled rows: confidences 0.9 and 0.7 -> mean 0.8, cut-off 0.9 * 0.8 = 0.72
    labeled = torch.tensor([[0.9, 0.1], [0.3, 0.7]]).log()
    weak = torch.tensor([[0.75, 0.25], [0.6, 0.4], [0.1, 0.9]]).log()
    strong = torch.randn(3, 2, generator=torch.Generator().manual_seed(0)).requires_grad_()
    y_pred = torch.cat([labeled, weak, strong])
    loss_fn = PseudoLabelLoss(RelativeThreshold(0.9), alpha=1.0)
    loss_fn(y_pred, SemiSupervisedTarget(torch.tensor([0, 1]), num_views=2))
    assert loss_fn.policy.cutoff.item() == pytest.approx(0.72)
    mask = torch.tensor([True, False, True])
    expected = (F.cross_entropy(strong, torch.tensor([0, 0, 1]), reduction="none") * mask).mean()
    assert torch.allclose(loss_fn.components["pseudo_loss"], expected)
    assert loss_fn.components["pseudo_mask_rate"].item() == pytest.approx(2 / 3)
    # more confident labeled predictions raise the cut-off above the second weak row's 0.9
    sure = torch.tensor([[0.999, 0.001], [0.001, 0.999]]).log()
    loss_fn(torch.cat([sure, weak, strong]), SemiSupervisedTarget(torch.tensor([0, 1]), num_views=2))
    assert loss_fn.components["pseudo_mask_rate"].item() == pytest.approx(1 / 3)  # only 0.9 >= 0.8991


def test_relative_threshold_validation_state_and_errors():
    from ignite_pseudolabel.thresholds import RelativeThreshold

    with pytest.raises(ValueError, match=r"threshold should be a finite number in \(0, 1\], but given 0.0"):
        RelativeThreshold(0.0)
    policy = RelativeThreshold()
    assert policy.threshold == 0.9 and policy.state_dict() == {}  # nothing to resume: the cut-off is per step
    with pytest.raises(ValueError, match="needs the class probabilities of the labeled rows"):
        policy(torch.tensor([[0.5, 0.5]]), valid(1))


@pytest.mark.parametrize("mapping", ["convex", "linear", "concave"])
def test_flexmatch_makes_no_tensor_from_python_values_per_step(monkeypatch, mapping):
    """A tensor made from a Python value at every step is a host-to-device copy on a GPU (issue #22: the concave
    mapping built torch.tensor(2.0, device=...) at every step)."""
    policy = FlexMatchThreshold(0.9, num_classes=3, num_unlabeled=8, mapping=mapping, warmup=False)
    probs = torch.tensor([[0.95, 0.03, 0.02], [0.2, 0.7, 0.1]])
    flags, index = valid(2), torch.arange(2)
    made = []
    real = torch.tensor
    monkeypatch.setattr(torch, "tensor", lambda *a, **k: made.append(a) or real(*a, **k))
    policy(probs, flags, index)
    _ = policy.class_thresholds  # the property computes the thresholds too
    assert made == []
    monkeypatch.undo()
    expected = {"convex": 1 / (2 - 1), "linear": 1.0, "concave": 1.0}[mapping]  # class 0: learning effect 1
    assert policy.class_thresholds[0].item() == pytest.approx(0.9 * expected)
