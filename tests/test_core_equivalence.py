"""Before and after the 0.3 reshaping: seeded runs of the composed PseudoLabelLoss give bit-identical losses, weights.

The "before" is the frozen pre-0.3 algorithm in ``tests/legacy_loss.py``. Each recipe trains a
small model for a few epochs twice from the same seed, once with each loss, on a stock
``create_supervised_trainer``; every iteration's loss value, the final weights and the policy's
statistics must be equal bit for bit.
"""

import copy

import pytest
import torch
from helpers import blobs, mlp
from ignite.engine import Events, create_supervised_trainer
from ignite.handlers import EMAHandler
from legacy_loss import LegacyDensePrepareBatch, LegacyPseudoLabelLoss
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset
from torchvision.transforms import v2

from ignite_pseudolabel import (
    AlphaRamp,
    DistributionAlignment,
    FlexMatchThreshold,
    FreeMatchThreshold,
    PseudoLabeledDataset,
    PseudoLabelLoss,
    SelfAdaptiveFairness,
    SemiSupervisedLoader,
    WeakStrongViews,
)
from ignite_pseudolabel.dense import DensePrepareBatch, DenseWeakStrongViews

N_LABELED, N_UNLABELED = 12, 48


def _classification_data(kind, seed):
    x, y = blobs(N_LABELED + N_UNLABELED, seed=seed)
    g = torch.Generator().manual_seed(seed)
    labeled = DataLoader(TensorDataset(x[:N_LABELED], y[:N_LABELED]), batch_size=4, shuffle=True, generator=g)
    x_u = x[N_LABELED:]
    if kind == "plain":
        return SemiSupervisedLoader(labeled, unlabeled=DataLoader(x_u, batch_size=8, shuffle=True, generator=g))
    if kind == "views":  # the strong view draws noise from the global generator, item by item
        views = WeakStrongViews(x_u, weak=lambda v: v, strong=lambda v: v * 0.7 + 0.5 * torch.randn(v.shape))
        return SemiSupervisedLoader(labeled, unlabeled=DataLoader(views, batch_size=8, shuffle=True, generator=g))
    pseudo = PseudoLabeledDataset(TensorDataset(x_u))
    pseudo.update(torch.arange(0, N_UNLABELED, 2), y[N_LABELED::2])

    def loader_fn(dataset):
        return DataLoader(dataset, batch_size=6, shuffle=True, generator=g)

    return SemiSupervisedLoader(labeled, pseudo=pseudo, loader_fn=loader_fn)


def _parts(recipe):
    """(policy, loss kwargs) of a recipe: fresh objects every call."""
    truth = blobs(N_LABELED + N_UNLABELED, seed=0)[1][N_LABELED:]
    if recipe == "lee_ramp":
        return {"threshold": 0.7}
    if recipe == "fixmatch_everything":
        return {"threshold": FreeMatchThreshold(3, momentum=0.9), "temperature": 0.5,
                "alignment": DistributionAlignment(3, momentum=0.9),
                "fairness": SelfAdaptiveFairness(3, weight=0.5, momentum=0.9), "held_back_targets": truth}
    if recipe == "teacher_flexmatch":
        return {"threshold": FlexMatchThreshold(0.8, num_classes=3, num_unlabeled=N_UNLABELED)}
    return {}


def _run(recipe, legacy, seed=0, epochs=4):
    torch.manual_seed(seed)
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    kind = {"lee_ramp": "plain", "mined": "pseudo"}.get(recipe, "views")
    data = _classification_data(kind, seed)
    kwargs = _parts(recipe)
    teacher = None
    if recipe == "teacher_flexmatch":
        ema = EMAHandler(model, momentum=0.5)
        teacher = ema.ema_model
    trainer_box = {}

    def alpha():
        return trainer_box["trainer"].state.alpha

    if legacy:
        policy = kwargs.pop("threshold", None)
        if isinstance(policy, float):
            from ignite_pseudolabel import FixedThreshold

            policy = FixedThreshold(policy)
        loss = LegacyPseudoLabelLoss(alpha, policy=policy, teacher=teacher, **kwargs)
    else:
        loss = PseudoLabelLoss(teacher=teacher, **kwargs)
    trainer = create_supervised_trainer(model, optimizer, loss, prepare_batch=loss.prepare_batch,
                                        output_transform=lambda x, y, y_pred, value: value.detach())
    trainer_box["trainer"] = trainer
    if not legacy:
        loss.attach(trainer)
    AlphaRamp(t1=1, t2=3, alpha_f=2.0).attach(trainer)
    if teacher is not None:
        ema.attach(trainer)
    values = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: values.append(e.state.output))
    trainer.run(data, max_epochs=epochs)
    return torch.stack(values), model.state_dict(), loss


@pytest.mark.parametrize("recipe", ["lee_ramp", "fixmatch_everything", "teacher_flexmatch", "mined"])
def test_seeded_classification_runs_are_bit_identical_before_and_after(recipe):
    before, weights_before, legacy = _run(recipe, legacy=True)
    after, weights_after, loss = _run(recipe, legacy=False)
    assert before.shape[0] > 8 and torch.equal(before, after)
    for name, value in weights_before.items():
        assert torch.equal(value, weights_after[name]), name
    if legacy.policy is not None:
        for (name, a), (_, b) in zip(legacy.policy.named_buffers(), loss.policy.named_buffers()):
            assert torch.equal(a, b), name
    for name in ("supervised_loss", "pseudo_loss", "pseudo_mask_rate", "pseudo_accuracy"):
        if legacy.components[name] is None:
            assert loss.components[name] is None
        else:
            assert torch.equal(legacy.components[name].float(), loss.components[name]), name


class _Canvases(Dataset):
    """Unlabeled uint8 canvases with a bright square, and their label maps."""

    def __init__(self, n, size=12, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.maps = torch.zeros(n, size, size, dtype=torch.long)
        for i in range(n):
            top, left = torch.randint(0, size - 4, (2,), generator=g).tolist()
            self.maps[i, top:top + 4, left:left + 4] = 1 + i % 2
        self.images = (self.maps * 100 + torch.randint(0, 30, (n, size, size), generator=g)).to(torch.uint8)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i].unsqueeze(0)


def _dense_run(legacy, seed=0):
    torch.manual_seed(seed)
    canvases = _Canvases(16)
    labeled_x = canvases.images[:4].unsqueeze(1).float() / 255
    labeled = DataLoader(TensorDataset(labeled_x, canvases.maps[:4]), batch_size=2, shuffle=True,
                         generator=torch.Generator().manual_seed(seed))
    views = DenseWeakStrongViews(canvases, v2.RandomCrop(12, padding=2), v2.ColorJitter(0.4, 0.4),
                                 v2.ToDtype(torch.float32, scale=True), held_back_targets=canvases.maps)
    unlabeled = DataLoader(views, batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(seed + 1))
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.2)
    ema = EMAHandler(model, momentum=0.5)
    policy = FreeMatchThreshold(3, momentum=0.9)
    boxes = torch.Generator().manual_seed(seed + 2)
    if legacy:
        loss = LegacyPseudoLabelLoss(lambda: 1.0, policy=policy, teacher=ema.ema_model)
        prepare = LegacyDensePrepareBatch(loss, {"p": 1.0}, boxes)
    else:
        loss = PseudoLabelLoss(policy, alpha=1.0, teacher=ema.ema_model)
        prepare = DensePrepareBatch(loss, cutmix={"p": 1.0}, generator=boxes)
    trainer = create_supervised_trainer(model, optimizer, loss, prepare_batch=prepare,
                                        output_transform=lambda x, y, y_pred, value: value.detach())
    ema.attach(trainer)
    values = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: values.append(e.state.output))
    trainer.run(SemiSupervisedLoader(labeled, unlabeled=unlabeled), max_epochs=4)
    return torch.stack(values), copy.deepcopy(model.state_dict()), loss


def test_seeded_dense_run_with_teacher_and_cutmix_is_bit_identical_before_and_after():
    before, weights_before, legacy = _dense_run(legacy=True)
    after, weights_after, loss = _dense_run(legacy=False)
    assert before.shape[0] == 8 and torch.equal(before, after)
    for name, value in weights_before.items():
        assert torch.equal(value, weights_after[name]), name
    assert torch.equal(legacy.components["pseudo_accuracy"], loss.components["pseudo_accuracy"])
