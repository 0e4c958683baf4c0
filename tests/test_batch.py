"""The batch module: what a semi-supervised batch holds and how it becomes one forward pass."""

import math

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
    assert target.num_views == 2 and target.teacher_logits is None and target.sample_index.tolist() == [0, 1, 2, 3]

    seen = []

    def teacher(inputs):
        seen.append((inputs.clone(), torch.is_grad_enabled()))
        return torch.zeros(inputs.shape[0], 5)

    x, target = prepare_semi_supervised_batch(SemiSupervisedBatch(labeled, unlabeled=views), teacher=teacher)
    assert x[:, 0].tolist() == [1, 1, 2, 2, 2, 2]  # the student's (strong) rows only
    assert target.num_views == 1 and target.teacher_logits.shape == (4, 5)
    assert seen[0][0].eq(0).all() and seen[0][1] is False  # the teacher saw the weak view, without gradients


def test_old_import_locations_still_work():
    from ignite_pseudolabel import augment, batch, data

    assert data.SemiSupervisedBatch is batch.SemiSupervisedBatch is ignite_pseudolabel.SemiSupervisedBatch
    assert data.SemiSupervisedTarget is batch.SemiSupervisedTarget
    assert data.prepare_semi_supervised_batch is batch.prepare_semi_supervised_batch
    assert augment.Views is batch.Views is ignite_pseudolabel.Views
    for name in set(batch.__all__) & set(ignite_pseudolabel.__all__):  # the root re-exports, not copies
        assert getattr(ignite_pseudolabel, name) is getattr(batch, name)


def _corrupt(n=4, dim=3, rows=(1,), value=math.nan, fill=2.0):
    x = torch.full((n, dim), fill)
    for r in rows:
        x[r, 0] = value
    return x


def test_non_finite_unlabeled_samples_are_zeroed_and_marked_invalid_in_every_mode():
    lab = (torch.ones(2, 3), torch.tensor([0, 1]))
    x, target = prepare_semi_supervised_batch(SemiSupervisedBatch(lab, unlabeled=_corrupt(rows=(1, 3))))
    assert torch.isfinite(x).all() and x[[3, 5]].eq(0).all() and x[[2, 4]].eq(2).all()
    assert target.unlabeled_valid.tolist() == [True, False, True, False]
    # Two views: a sample is invalid when either view is; each view's own corrupt rows are zeroed.
    views = Views(_corrupt(rows=(0,), value=math.inf), _corrupt(rows=(2,), value=-math.inf), torch.arange(4))
    x, target = prepare_semi_supervised_batch(SemiSupervisedBatch(lab, unlabeled=views))
    assert torch.isfinite(x).all() and x[2].eq(0).all() and x[6 + 2].eq(0).all() and x[6].eq(2).all()
    assert target.num_views == 2 and target.unlabeled_valid.tolist() == [False, True, False, True]
    # A teacher sees the zeroed weak view.
    seen = []
    x, target = prepare_semi_supervised_batch(SemiSupervisedBatch(lab, unlabeled=views),
                                              teacher=lambda t: seen.append(t) or torch.zeros(t.shape[0], 2))
    assert torch.isfinite(seen[0]).all() and seen[0][0].eq(0).all() and torch.isfinite(x).all()
    assert target.unlabeled_valid.tolist() == [False, True, False, True]
    x, target = prepare_semi_supervised_batch(SemiSupervisedBatch(lab, unlabeled=[_corrupt()]),
                                              teacher=lambda t: seen.append(t) or torch.zeros(t.shape[0], 2))
    assert torch.isfinite(seen[1]).all() and target.unlabeled_valid.tolist() == [True, False, True, True]
    # Mined pseudo-labeled rows.
    x, target = prepare_semi_supervised_batch(SemiSupervisedBatch(lab, pseudo=(_corrupt(), torch.tensor([0, 1, 0, 1]))))
    assert torch.isfinite(x).all() and x[3].eq(0).all() and target.unlabeled_valid.tolist() == [True, False, True, True]


def test_finite_and_integer_inputs_are_unchanged_and_labeled_inputs_are_not_checked():
    lab = (torch.full((2, 3), math.nan), torch.tensor([0, 1]))
    x, target = prepare_semi_supervised_batch(SemiSupervisedBatch(lab, unlabeled=_corrupt(rows=())))
    assert x[:2].isnan().all() and target.unlabeled_valid.all()
    x, target = prepare_semi_supervised_batch(SemiSupervisedBatch(lab, unlabeled=_corrupt()), use_second=False)
    assert target.unlabeled_valid is None
    images = torch.randint(0, 255, (4, 1, 2, 2), dtype=torch.uint8)
    x, target = prepare_semi_supervised_batch(SemiSupervisedBatch((images[:2], torch.tensor([0, 1])), unlabeled=images))
    assert torch.equal(x[2:], images) and target.unlabeled_valid is None


def test_zero_non_finite_rows_is_pure_and_handles_any_rank():
    from ignite_pseudolabel.batch import zero_non_finite_rows

    x = torch.randn(3, 2, 4, 4)
    x[1, 1, 2, 3] = math.nan
    before = x.clone()
    cleaned, finite = zero_non_finite_rows(x)
    assert finite.tolist() == [True, False, True] and cleaned[1].eq(0).all()
    assert torch.equal(cleaned[[0, 2]], x[[0, 2]]) and torch.equal(x.isnan(), before.isnan())  # input untouched
    cleaned, finite = zero_non_finite_rows(torch.tensor([1.0, math.inf, 2.0]))
    assert cleaned.tolist() == [1.0, 0.0, 2.0] and finite.tolist() == [True, False, True]
    cleaned, finite = zero_non_finite_rows(torch.zeros(0, 3, dtype=torch.float16))
    assert cleaned.shape == (0, 3) and cleaned.dtype == torch.float16 and finite.shape == (0,)
    assert zero_non_finite_rows(torch.ones(2, 3, dtype=torch.bfloat16))[0].dtype == torch.bfloat16
    huge = torch.full((2, 1000), torch.finfo(torch.float16).max, dtype=torch.float16)  # finite; its sum is not
    huge[1, 7] = -math.inf
    cleaned, finite = zero_non_finite_rows(huge)
    assert finite.tolist() == [True, False] and torch.equal(cleaned[0], huge[0]) and cleaned[1].eq(0).all()


def test_views_made_in_prepare_batch_accept_one_element_batches_and_zero_non_finite_views():
    class Flip:
        weak = staticmethod(lambda t: t.float())

        def __call__(self, raw):
            return Views(raw.float(), -raw.float() / 0.0, torch.arange(raw.shape[0]))  # strong: 0 / 0 is NaN

    lab = (torch.ones(2, 3, dtype=torch.uint8), torch.tensor([0, 1]))
    raw = torch.tensor([[1, 2, 3], [0, 0, 0]], dtype=torch.uint8)
    x, target = prepare_semi_supervised_batch(SemiSupervisedBatch(lab, unlabeled=[raw]), views=Flip())
    assert x.shape == (6, 3) and torch.isfinite(x).all()  # the strong view of every sample was +-inf or NaN
    assert target.num_views == 2 and target.unlabeled_valid.tolist() == [False, False]
    with pytest.raises(TypeError, match="unlabeled batch should hold inputs only, but given a list of 2"):
        prepare_semi_supervised_batch(SemiSupervisedBatch(lab, unlabeled=[raw, raw]), views=Flip())


def test_the_names_renamed_in_0_3_still_work_with_a_deprecation_warning():
    target = SemiSupervisedTarget(torch.tensor([0, 1]), num_views=2, held_back_targets=torch.tensor([3]))
    with pytest.warns(DeprecationWarning, match=r"SemiSupervisedTarget.views is deprecated .* use num_views"):
        assert target.views == 2
    with pytest.warns(DeprecationWarning, match="use held_back_targets"):
        assert target.unlabeled_targets.tolist() == [3]
    with pytest.warns(DeprecationWarning, match=r"SemiSupervisedTarget\(views=...\) is deprecated"):
        old = SemiSupervisedTarget(torch.tensor([0, 1]), views=1, unlabeled_targets=torch.tensor([4]))
    assert old.num_views == 1 and old.held_back_targets.tolist() == [4]
    with pytest.warns(DeprecationWarning, match="use held_back_targets"):
        old = old._replace(unlabeled_targets=torch.tensor([5]))
    assert old.held_back_targets.tolist() == [5]
