"""A stock create_supervised_trainer (and a hand-written process function) made semi-supervised."""

import copy
import functools

import pytest
import torch
from helpers import blobs, mlp
from ignite.engine import Engine, Events, create_supervised_trainer
from torch.utils.data import DataLoader, TensorDataset

from ignite_pseudolabel import AlphaRamp, PseudoLabelLoss, PseudoLabelMiner, SemiSupervisedLoader


def fixed_data(mode, n_batches=4):
    x, y = blobs(8 * n_batches + 40, seed=3)
    labeled = DataLoader(TensorDataset(x[: 4 * n_batches], y[: 4 * n_batches]), batch_size=4)
    if mode == "online":
        return labeled, DataLoader(x[4 * n_batches:], batch_size=8)
    pseudo = DataLoader(TensorDataset(x[4 * n_batches:], (y[4 * n_batches:] + 1) % 3), batch_size=8)
    return labeled, pseudo


def manual_reference(model, mode, accumulation, epochs, alpha_f):
    """What the trainer must compute, written out by hand."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    labeled, second = fixed_data(mode)
    second_batches = list(second)
    loss_fn = PseudoLabelLoss(threshold=0.6 if mode == "online" else None)
    it = 0
    for epoch in range(1, epochs + 1):
        loss_fn.alpha = AlphaRamp.simulate_values(epoch, t1=1, t2=2, alpha_f=alpha_f)[-1][1]
        for x_l, y_l in labeled:
            if it % accumulation == 0:
                optimizer.zero_grad()
            extra = second_batches[it % len(second_batches)]
            x_u = extra if mode == "online" else extra[0]
            x = torch.cat([x_l, x_u]) if loss_fn.alpha > 0 else x_l
            pred = model(x)
            n = x_l.shape[0]
            sup = torch.nn.functional.cross_entropy(pred[:n], y_l)
            if loss_fn.alpha == 0:
                loss = sup
            elif mode == "online":
                conf, lab = pred[n:].detach().softmax(1).max(1)
                mask = conf >= 0.6
                pseudo = (torch.nn.functional.cross_entropy(pred[n:], lab, reduction="none") * mask).mean()
                loss = sup + loss_fn.alpha * pseudo
            else:
                loss = sup + loss_fn.alpha * torch.nn.functional.cross_entropy(pred[n:], extra[1])
            (loss / accumulation).backward()
            it += 1
            if it % accumulation == 0:
                optimizer.step()
    return model


@pytest.mark.parametrize("mode", ["online", "mined"])
def test_stock_trainer_with_gradient_accumulation_matches_the_hand_written_computation(mode):
    torch.manual_seed(0)
    model = mlp()
    reference = manual_reference(copy.deepcopy(model), mode, accumulation=2, epochs=3, alpha_f=2.0)

    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = PseudoLabelLoss(threshold=0.6 if mode == "online" else None)
    trainer = create_supervised_trainer(model, optimizer, loss, device="cpu", non_blocking=True,
                                        prepare_batch=loss.prepare_batch, gradient_accumulation_steps=2)
    loss.attach(trainer)
    AlphaRamp(t1=1, t2=2, alpha_f=2.0).attach(trainer)
    labeled, second = fixed_data(mode)
    data = (SemiSupervisedLoader(labeled, unlabeled=second) if mode == "online"
            else SemiSupervisedLoader(labeled, pseudo=second))
    trainer.run(data, max_epochs=3)
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q)


def accuracy(model, x, y):
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


@pytest.mark.parametrize("mode", ["online", "mined"])
def test_both_modes_learn_from_unlabeled_data_with_the_stock_trainer(mode):
    torch.manual_seed(0)
    x, y = blobs(400, seed=1, spread=1.2)
    x_test, y_test = blobs(300, seed=2, spread=1.2)
    labeled = DataLoader(TensorDataset(x[:6], y[:6]), batch_size=6, shuffle=True)
    model = mlp()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    loss = PseudoLabelLoss(threshold=0.9 if mode == "online" else None)
    trainer = create_supervised_trainer(model, optimizer, loss, prepare_batch=loss.prepare_batch,
                                        gradient_accumulation_steps=2)
    loss.attach(trainer)
    AlphaRamp(t1=20, t2=60, alpha_f=3.0).attach(trainer)
    if mode == "online":
        data = SemiSupervisedLoader(labeled, unlabeled=DataLoader(x[6:], batch_size=64, shuffle=True))
    else:
        miner = PseudoLabelMiner(model, x[6:], threshold=0.9, held_back_targets=y[6:])
        miner.attach(trainer, Events.EPOCH_COMPLETED(every=20))
        data = SemiSupervisedLoader(labeled, pseudo=miner.dataset,
                                    loader_fn=functools.partial(DataLoader, batch_size=64, shuffle=True))
    trainer.run(data, max_epochs=100)
    assert trainer.state.alpha == 3.0
    assert accuracy(model, x_test, y_test) > 0.9
    if mode == "mined":
        assert miner.rounds == 5 and len(miner.dataset) > 100


def test_hand_written_process_function():
    torch.manual_seed(0)
    x, y = blobs(200, seed=4)
    model = mlp()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    loss_fn = PseudoLabelLoss(threshold=0.8)

    def train_step(engine, batch):
        model.train()
        optimizer.zero_grad()
        inputs, target = loss_fn.prepare_batch(batch, device="cpu")
        loss = loss_fn(model(inputs), target)
        loss.backward()
        optimizer.step()
        return {"loss": loss.detach(), **loss_fn.components}

    trainer = Engine(train_step)
    loss_fn.attach(trainer)
    AlphaRamp(t1=2, t2=5, alpha_f=1.0).attach(trainer)
    labeled = DataLoader(TensorDataset(x[:9], y[:9]), batch_size=3, shuffle=True)
    trainer.run(SemiSupervisedLoader(labeled, unlabeled=DataLoader(x[9:], batch_size=32, shuffle=True)),
                max_epochs=30)
    out = trainer.state.output
    assert set(out) == {"loss", "supervised_loss", "pseudo_loss", "pseudo_mask_rate", "pseudo_accuracy",
                        "pseudo_non_finite_inputs"}
    assert 0 < out["pseudo_mask_rate"].item() <= 1
    assert torch.equal(trainer.state.pseudo_mask_rate, out["pseudo_mask_rate"])
    assert accuracy(model, *blobs(200, seed=6)) > 0.95


def test_constant_alpha_without_a_ramp():
    model = mlp()
    loss = PseudoLabelLoss(alpha=0.5)
    trainer = create_supervised_trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), loss,
                                        prepare_batch=loss.prepare_batch)
    labeled, unlabeled = fixed_data("online")
    trainer.run(SemiSupervisedLoader(labeled, unlabeled=unlabeled), max_epochs=1)
    assert loss.components["pseudo_mask_rate"].item() == 1.0


def test_fixmatch_views_with_ema_teacher_on_the_stock_trainer():
    from ignite.handlers import EMAHandler

    from ignite_pseudolabel import FreeMatchThreshold, Views, WeakStrongViews

    torch.manual_seed(0)
    x, y = blobs(300, seed=7, spread=1.0)
    x_test, y_test = blobs(300, seed=8, spread=1.0)
    model = mlp()
    ema = EMAHandler(model, momentum=0.2)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    loss = PseudoLabelLoss(FreeMatchThreshold(3), teacher=ema.ema_model, held_back_targets=y[6:])
    trainer = create_supervised_trainer(model, optimizer, loss, prepare_batch=loss.prepare_batch)
    loss.attach(trainer)
    ema.attach(trainer)
    AlphaRamp(t1=5, t2=20, alpha_f=1.0).attach(trainer)
    views = WeakStrongViews(x[6:], weak=lambda v: v + 0.05 * torch.randn_like(v),
                            strong=lambda v: v + 0.5 * torch.randn_like(v))
    labeled = DataLoader(TensorDataset(x[:6], y[:6]), batch_size=6, shuffle=True)
    data = SemiSupervisedLoader(labeled, unlabeled=DataLoader(views, batch_size=42, shuffle=True))
    assert isinstance(next(iter(data)).unlabeled, Views)
    trainer.run(data, max_epochs=60)
    assert 0 < trainer.state.pseudo_mask_rate.item() <= 1
    assert trainer.state.pseudo_accuracy.item() > 0.9
    assert accuracy(ema.ema_model, x_test, y_test) > 0.9


def test_dense_segmentation_with_per_pixel_pseudo_labels():
    """A tiny synthetic segmentation task: pixels of a bright square are class 1, the rest class 0."""
    from ignite_pseudolabel import Views, WeakStrongViews

    torch.manual_seed(0)

    def images(n, seed):
        g = torch.Generator().manual_seed(seed)
        masks = torch.zeros(n, 8, 8, dtype=torch.long)
        for i in range(n):
            r, c = torch.randint(0, 5, (2,), generator=g).tolist()
            masks[i, r:r + 3, c:c + 3] = 1
        return (masks.float() + 0.3 * torch.randn(n, 8, 8, generator=g)).unsqueeze(1), masks

    x_l, m_l = images(2, 0)
    x_u, _ = images(100, 1)
    x_t, m_t = images(50, 2)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 2, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    loss = PseudoLabelLoss(threshold=0.9)
    trainer = create_supervised_trainer(model, optimizer, loss, prepare_batch=loss.prepare_batch)
    loss.attach(trainer)
    AlphaRamp(t1=10, t2=30, alpha_f=1.0).attach(trainer)
    views = WeakStrongViews(x_u, weak=lambda v: v, strong=lambda v: v + 0.3 * torch.randn_like(v))
    data = SemiSupervisedLoader(DataLoader(TensorDataset(x_l, m_l), batch_size=2),
                                unlabeled=DataLoader(views, batch_size=20, shuffle=True))
    rates = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: rates.append(e.state.pseudo_mask_rate.item()))
    trainer.run(data, max_epochs=60)
    x, target = loss.prepare_batch(next(iter(data)))
    assert isinstance(next(iter(data)).unlabeled, Views) and target.num_views == 2
    assert 0 < rates[-1] < 1 or rates[-1] == 1.0  # a per-pixel mask rate
    assert any(0 < r < 1 for r in rates)  # some pixels used, some not: per-element masking
    with torch.no_grad():
        pixel_accuracy = (model(x_t).argmax(1) == m_t).float().mean().item()
    assert pixel_accuracy > 0.95


@pytest.mark.filterwarnings("ignore:CUDA is not available")
def test_amp_mode_trainer_runs_the_semi_supervised_step():
    """amp_mode="amp" wraps the forward pass and the loss in autocast (a no-op on CPU, bf16/fp16 on CUDA)."""
    model = mlp()
    loss = PseudoLabelLoss(threshold=0.5, alpha=1.0)
    trainer = create_supervised_trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), loss, device="cpu",
                                        amp_mode="amp", prepare_batch=loss.prepare_batch)
    labeled, unlabeled = fixed_data("online")
    trainer.run(SemiSupervisedLoader(labeled, unlabeled=unlabeled), max_epochs=2)
    assert trainer.state.iteration == 8 and torch.isfinite(loss.components["pseudo_loss"])
