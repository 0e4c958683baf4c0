"""Batch preparation as an object: the weight gate, the teacher (and its autocast), and every documented
form of the unlabeled batch through Ignite's stock trainer."""

import pytest
import torch
from ignite.engine import create_supervised_trainer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ignite_pseudolabel import (
    BatchViews,
    DeviceBatches,
    PseudoLabelLoss,
    SemiSupervisedBatch,
    SemiSupervisedLoader,
    WeakStrongViews,
    weak_strong_transforms,
)
from ignite_pseudolabel.prepare import PrepareBatch

LABELED = (torch.ones(2, 3), torch.tensor([0, 1]))


def test_the_weight_gate_reads_the_callable_at_every_batch():
    weights = iter([0.0, 0.5])
    prepare = PrepareBatch(weight=lambda: next(weights))
    batch = SemiSupervisedBatch(LABELED, unlabeled=torch.zeros(4, 3))
    assert prepare(batch)[0].shape == (2, 3) and prepare(batch)[0].shape == (6, 3)
    assert PrepareBatch(weight=lambda: 0.0, skip_when_zero=False)(batch)[0].shape == (6, 3)
    assert PrepareBatch()(batch)[0].shape == (6, 3)  # no weight: always both parts


def test_the_teacher_predicts_without_gradients_and_under_its_autocast():
    teacher = nn.Linear(3, 2)
    batch = SemiSupervisedBatch(LABELED, unlabeled=torch.randn(4, 3))
    x, target = PrepareBatch(teacher=teacher)(batch)
    assert x.shape == (6, 3) and target.teacher_logits.dtype == torch.float32
    assert not target.teacher_logits.requires_grad
    _, target = PrepareBatch(teacher=teacher, teacher_autocast=torch.bfloat16)(batch)
    assert target.teacher_logits.dtype == torch.bfloat16  # the trainer's autocast does not cover prepare_batch
    _, target = PseudoLabelLoss(alpha=1.0, teacher=teacher, teacher_autocast=torch.bfloat16).prepare_batch(batch)
    assert target.teacher_logits.dtype == torch.bfloat16


def _run(loss, unlabeled, images):
    model = nn.Sequential(nn.Flatten(), nn.Linear(images[0].numel(), 10))
    trainer = create_supervised_trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), loss,
                                        prepare_batch=loss.prepare_batch)
    loss.attach(trainer)
    labeled = DeviceBatches(images[:8], torch.arange(8) % 10, batch_size=4)
    return trainer.run(SemiSupervisedLoader(labeled, unlabeled=unlabeled), max_epochs=1)


@pytest.mark.parametrize("form", ["uint8 tensors", "RawBatch", "one-element batches", "Views", "float tensors"])
def test_every_documented_form_of_the_unlabeled_batch_trains_on_the_stock_trainer(form):
    torch.manual_seed(0)
    images = torch.randint(0, 256, (32, 1, 8, 8), dtype=torch.uint8)
    views = BatchViews("digits", mean=(0.5,), std=(0.5,))
    if form == "uint8 tensors":  # positions unknown: Views.sample_index is None (issue #22: used to crash)
        loss, unlabeled = PseudoLabelLoss(alpha=1.0, views=views), DeviceBatches(images, batch_size=8)
    elif form == "RawBatch":
        loss, unlabeled = PseudoLabelLoss(alpha=1.0, views=views), DeviceBatches(images, batch_size=8,
                                                                                   return_index=True)
    elif form == "one-element batches":  # what a DataLoader over TensorDataset(images) yields
        loss, unlabeled = PseudoLabelLoss(alpha=1.0, views=views), DataLoader(TensorDataset(images), batch_size=8)
    elif form == "Views":
        weak, strong = weak_strong_transforms("digits", mean=(0.5,), std=(0.5,))
        loss = PseudoLabelLoss(alpha=1.0)
        unlabeled = DataLoader(WeakStrongViews(images, weak, strong), batch_size=8)
        images = images.float() / 255  # the labeled batch must match the views' dtype
    else:
        images = images.float() / 255
        loss, unlabeled = PseudoLabelLoss(alpha=1.0), DataLoader(images, batch_size=8)
    state = _run(loss, unlabeled, images)
    assert state.iteration == 2 and torch.isfinite(state.pseudo_loss) and 0 <= float(state.pseudo_mask_rate) <= 1


def test_validation():
    with pytest.raises(TypeError, match="views should be a callable with a weak method"):
        PrepareBatch(views=lambda raw: raw)
    with pytest.raises(TypeError, match=r"teacher should be a model \(callable\), but given int"):
        PrepareBatch(teacher=3)
    with pytest.raises(TypeError, match="weight should be a callable returning a number, but given float"):
        PrepareBatch(weight=0.5)
    with pytest.raises(TypeError, match="teacher_autocast should be a torch.dtype or None, but given str"):
        PrepareBatch(teacher_autocast="bf16")
    with pytest.raises(TypeError, match="Expected a SemiSupervisedBatch"):
        PrepareBatch()((torch.zeros(1), torch.zeros(1)))
