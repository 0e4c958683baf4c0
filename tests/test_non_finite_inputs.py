"""Unlabeled sets with corrupt samples (NaN or infinite inputs) on a stock Ignite trainer.

A NaN input poisons the weights even when its loss is masked (a zero gradient times a NaN input is
NaN) and a BatchNorm layer spreads it to the whole batch in the forward pass, so such samples must be
neutralised before the forward pass. Each test trains a linear and a BatchNorm model on an unlabeled
set with four corrupt samples and checks that the weights and buffers stay finite, that the corrupt
samples are counted on ``engine.state`` and in TensorBoard, and that a warning says so once.
"""

import copy
import functools
import math
import warnings

import pytest
import torch
from helpers import blobs, read_scalars
from ignite.engine import Events, create_supervised_trainer
from ignite.handlers import TensorboardLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import ignite_pseudolabel.batch
from ignite_pseudolabel import (
    PseudoLabelLoss,
    PseudoLabelMiner,
    SemiSupervisedLoader,
    WeakStrongViews,
    attach_tensorboard,
)

CORRUPT = [3, 5, 17, 40]
EPOCHS = 3


def data():
    """12 labeled samples and 60 unlabeled ones, of which CORRUPT hold a NaN or an infinity."""
    x, y = blobs(72)
    clean = x[12:].clone()
    corrupt = clean.clone()
    corrupt[[3, 17, 40]] = math.nan
    corrupt[5, 1] = math.inf
    return (x[:12], y[:12]), clean, corrupt


def linear():
    return nn.Linear(4, 3)


def batch_norm():
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))


def run(mode, make_model, tb_logger=None):
    """Trains EPOCHS epochs of 3 iterations, each epoch seeing every unlabeled sample once."""
    torch.manual_seed(0)
    (x, y), clean, corrupt = data()
    model = make_model()
    teacher = copy.deepcopy(model).eval() if mode == "teacher" else None
    loss = PseudoLabelLoss(threshold=None if mode == "lee" else 0.4, alpha=1.0, teacher=teacher)
    trainer = create_supervised_trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), loss,
                                        prepare_batch=loss.prepare_batch)
    loss.attach(trainer)
    labeled = DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True)
    if mode == "mined":
        # Mined on clean inputs, trained on corrupt ones (e.g. a training transform that fails).
        miner = PseudoLabelMiner(model, clean, threshold=0.0, train_dataset=corrupt)
        miner.attach(trainer)
        loader = SemiSupervisedLoader(labeled, pseudo=miner.dataset,
                                      loader_fn=functools.partial(DataLoader, batch_size=20, shuffle=True))
    else:
        dataset = corrupt if mode != "views" else WeakStrongViews(corrupt, lambda t: t, lambda t: t * 1.1)
        loader = SemiSupervisedLoader(labeled, unlabeled=DataLoader(dataset, batch_size=20, shuffle=True))
    left_out, mask_rates = [], []

    @trainer.on(Events.ITERATION_COMPLETED)
    def record(engine):
        left_out.append(engine.state.pseudo_non_finite_inputs)
        mask_rates.append(engine.state.pseudo_mask_rate)

    if tb_logger is not None:
        attach_tensorboard(tb_logger, trainer, loss=loss)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.run(loader, max_epochs=EPOCHS)
    loss_warnings = [str(w.message) for w in caught if str(w.message).startswith("PseudoLabelLoss")]
    return model, torch.stack(left_out), torch.stack(mask_rates), loss_warnings


@pytest.mark.parametrize("make_model", [linear, batch_norm], ids=["linear", "batchnorm"])
@pytest.mark.parametrize("mode", ["lee", "views", "teacher", "mined"])
def test_corrupt_unlabeled_samples_leave_the_weights_finite_and_are_counted(mode, make_model):
    model, left_out, mask_rates, loss_warnings = run(mode, make_model)
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        assert torch.isfinite(tensor).all(), name
    assert left_out.sum().item() == len(CORRUPT) * EPOCHS  # every pass saw each corrupt sample once
    assert mask_rates.max().item() > 0  # the pseudo term was in use
    assert len(loss_warnings) == 1, loss_warnings  # once, not once per epoch
    assert loss_warnings[0].startswith(f"PseudoLabelLoss: {len(CORRUPT)} unlabeled or pseudo-labeled samples in "
                                       "epoch 1 had non-finite inputs")


@pytest.mark.parametrize("make_model", [linear, batch_norm], ids=["linear", "batchnorm"])
def test_without_neutralising_the_inputs_the_same_run_poisons_the_weights(monkeypatch, make_model):
    """The failure the tests above guard against, reproduced with the zeroing switched off."""
    monkeypatch.setattr(ignite_pseudolabel.batch, "zero_non_finite_rows", lambda inputs: (inputs, None))
    model, _, _, _ = run("lee", make_model)
    assert not all(torch.isfinite(p).all() for p in model.parameters())


def test_the_count_is_logged_to_tensorboard(tmp_path):
    with TensorboardLogger(log_dir=tmp_path) as tb_logger:
        run("views", batch_norm, tb_logger)
    scalars, _ = read_scalars(tmp_path)
    values = [value for _, value in scalars["train/pseudo_non_finite_inputs"]]
    assert len(values) == 3 * EPOCHS and sum(values) == len(CORRUPT) * EPOCHS


def test_the_miner_never_selects_corrupt_samples():
    torch.manual_seed(0)
    _, _, corrupt = data()
    model = batch_norm()
    model(torch.randn(16, 4))  # running statistics of a trained model
    miner = PseudoLabelMiner(model, TensorDataset(corrupt), threshold=0.0, batch_size=16)
    with pytest.warns(RuntimeWarning, match=f"{len(CORRUPT)} of 60 samples had non-finite inputs"):
        miner.run()
    assert sorted(set(range(60)) - set(miner.indices.tolist())) == CORRUPT
