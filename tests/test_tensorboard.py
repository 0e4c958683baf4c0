import pytest
import torch
from helpers import blobs, loaders, mlp, read_scalars
from ignite.engine import Engine, Events, create_supervised_evaluator, create_supervised_trainer
from ignite.handlers import TensorboardLogger
from ignite.metrics import Accuracy
from torch.utils.data import DataLoader, TensorDataset

from ignite_pseudolabel import (
    AlphaRamp,
    FixedThreshold,
    PseudoLabelLoss,
    PseudoLabelMiner,
    SemiSupervisedLoader,
    attach_tensorboard,
)
from ignite_pseudolabel.tensorboard import MiningHandler, ThresholdsHandler


def test_training_validation_and_mining_scalars_are_written(tmp_path):
    labeled, x_u, y_u = loaders()
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = PseudoLabelLoss()
    trainer = create_supervised_trainer(model, optimizer, loss, prepare_batch=loss.prepare_batch)
    loss.attach(trainer)
    AlphaRamp(t1=1, t2=2, alpha_f=2.0).attach(trainer)
    miner = PseudoLabelMiner(model, x_u, threshold=0.5, held_back_targets=y_u)
    miner.attach(trainer, Events.EPOCH_COMPLETED)
    evaluator = create_supervised_evaluator(model, metrics={"accuracy": Accuracy()})
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda _: evaluator.run(
        DataLoader(TensorDataset(*blobs(30, seed=5)), batch_size=10)))

    tb = TensorboardLogger(log_dir=tmp_path)
    attach_tensorboard(tb, trainer, evaluators={"validation": evaluator}, miner=miner, log_every=2,
                       optimizer=optimizer)
    trainer.run(SemiSupervisedLoader(labeled, pseudo=miner.dataset), max_epochs=3)
    tb.close()

    scalars, acc = read_scalars(tmp_path)
    for tag in ("train/loss", "train/alpha", "train/supervised_loss", "train/pseudo_loss",
                "train/pseudo_mask_rate", "lr/group_0", "validation/accuracy", "pseudo/num_labels",
                "pseudo/accuracy", "pseudo/class_count/0", "pseudo/class_count/2", "pseudo/non_finite"):
        assert tag in scalars, tag
    # 3 epochs x 3 iterations, logged every 2 iterations
    assert [s for s, _ in scalars["train/alpha"]] == [2, 4, 6, 8]
    assert [v for _, v in scalars["train/alpha"]] == [0.0, 2.0, 2.0, 2.0]
    # epoch 1 had no pseudo-labels yet (mined at its end): the rate is 0, then 1
    assert [v for _, v in scalars["train/pseudo_mask_rate"]] == [0.0, 1.0, 1.0, 1.0]
    assert [s for s, _ in scalars["validation/accuracy"]] == [1, 2, 3]
    assert [s for s, _ in scalars["pseudo/num_labels"]] == [1, 2, 3]
    assert scalars["pseudo/num_labels"][-1][1] == len(miner.dataset)
    counts = [scalars[f"pseudo/class_count/{c}"][-1][1] for c in range(3)]
    assert counts == miner.class_counts.tolist()
    assert scalars["pseudo/accuracy"][-1][1] == pytest.approx(miner.accuracy)
    assert {"pseudo/confidence", "pseudo/accepted_confidence"} <= set(acc.Tags()["histograms"])
    loss_values = [v for _, v in scalars["train/loss"]]
    assert all(v > 0 for v in loss_values)


def test_argument_validation(tmp_path):
    labeled, x_u, _ = loaders()
    trainer = create_supervised_trainer(mlp(), torch.optim.SGD(mlp().parameters(), lr=0.1), torch.nn.CrossEntropyLoss())
    with pytest.raises(TypeError, match="tb_logger should be a TensorboardLogger"):
        attach_tensorboard("logs", trainer)
    tb = TensorboardLogger(log_dir=tmp_path)
    with pytest.raises(TypeError, match="trainer should be an ignite Engine"):
        attach_tensorboard(tb, None)
    with pytest.raises(ValueError, match="log_every should be an integer >= 1, but given 0"):
        attach_tensorboard(tb, trainer, log_every=0)
    tb.close()


def test_mining_that_accepts_nothing_keeps_training_and_logs_zero(tmp_path):
    import warnings

    labeled, x_u, _ = loaders()
    model = mlp()
    loss = PseudoLabelLoss()
    trainer = create_supervised_trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), loss,
                                        prepare_batch=loss.prepare_batch)
    loss.attach(trainer)
    AlphaRamp(t1=0, t2=0, alpha_f=1.0).attach(trainer)
    miner = PseudoLabelMiner(model, x_u, threshold=1.0)  # nothing reaches a confidence of exactly 1
    miner.attach(trainer, Events.EPOCH_COMPLETED)
    tb = TensorboardLogger(log_dir=tmp_path)
    attach_tensorboard(tb, trainer, miner=miner)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.run(SemiSupervisedLoader(labeled, pseudo=miner.dataset), max_epochs=3)
    tb.close()
    empty = [w for w in caught if "accepted no sample" in str(w.message)]
    assert len(empty) == 1  # warned once, not every round
    assert miner.rounds == 3 and trainer.state.iteration == 9 and trainer.state.num_pseudo_labels == 0
    scalars, _ = read_scalars(tmp_path)
    assert [v for _, v in scalars["pseudo/num_labels"]] == [0, 0, 0]
    assert set(v for _, v in scalars["train/pseudo_mask_rate"]) == {0.0}
    assert all(v > 0 for _, v in scalars["train/supervised_loss"])


def test_a_renamed_ramp_is_logged_under_the_name_it_publishes(tmp_path):
    labeled, x_u, _ = loaders()  # 3 iterations per epoch
    model = mlp()
    loss = PseudoLabelLoss(threshold=0.5, alpha_name="unlabeled_weight")
    trainer = create_supervised_trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), loss,
                                        prepare_batch=loss.prepare_batch)
    loss.attach(trainer)
    ramp = AlphaRamp(t1=1, t2=2, alpha_f=2.0, param_name="unlabeled_weight")
    ramp.attach(trainer)
    loggers = {"from_loss": {"loss": loss}, "from_ramp": {"ramp": ramp}}
    tbs = [TensorboardLogger(log_dir=tmp_path / name) for name in loggers]
    for tb, kwargs in zip(tbs, loggers.values()):
        attach_tensorboard(tb, trainer, log_every_iters=3, **kwargs)
    trainer.run(SemiSupervisedLoader(labeled, unlabeled=DataLoader(x_u, batch_size=4)), max_epochs=2)
    for tb in tbs:
        tb.close()
    for name in loggers:
        scalars, _ = read_scalars(tmp_path / name)
        assert scalars["train/unlabeled_weight"] == [(3, 0.0), (6, 2.0)], name
        assert "train/alpha" not in scalars and "train/pseudo_mask_rate" in scalars
    scalars, _ = read_scalars(tmp_path / "from_loss")
    assert [s for s, _ in scalars["thresholds/0"]] == [3, 6]  # the loss's policy, through ThresholdsHandler


def test_handlers_are_ignite_handlers_with_a_global_step_transform(tmp_path):
    miner = PseudoLabelMiner(mlp(), blobs(20)[0], threshold=0.1)
    trainer = Engine(lambda engine, batch: None)
    with TensorboardLogger(log_dir=tmp_path) as tb:
        tb.attach(miner.engine, MiningHandler(miner, tag="mined", histogram=False,
                                              global_step_transform=lambda engine, event: 10 * miner.rounds),
                  Events.COMPLETED)
        tb.attach(trainer, ThresholdsHandler(FixedThreshold(0.9, num_classes=2),
                                             global_step_transform=lambda engine, event: 100 + engine.state.iteration),
                  Events.ITERATION_COMPLETED(every=2))
        miner.run()
        miner.run()
        trainer.run([0] * 4)
    scalars, acc = read_scalars(tmp_path)
    assert [s for s, _ in scalars["mined/num_labels"]] == [10, 20]
    assert "mined/confidence" not in acc.Tags()["histograms"]
    assert [s for s, _ in scalars["thresholds/1"]] == [102, 104]
    assert scalars["thresholds/1"][0][1] == pytest.approx(0.9)


def test_handler_argument_validation(tmp_path):
    miner = PseudoLabelMiner(mlp(), blobs(20)[0], threshold=0.1)
    with pytest.raises(TypeError, match="miner should be a PseudoLabelMiner, but given str"):
        MiningHandler("miner")
    with pytest.raises(TypeError, match="policy should be a ThresholdPolicy, but given float"):
        ThresholdsHandler(0.9)
    with pytest.raises(TypeError, match="global_step_transform should be callable, but given int"):
        MiningHandler(miner, global_step_transform=3)
    with pytest.raises(RuntimeError, match="works only with TensorboardLogger"):
        MiningHandler(miner)(miner.engine, object(), Events.COMPLETED)
    trainer = Engine(lambda engine, batch: None)
    with TensorboardLogger(log_dir=tmp_path) as tb:
        with pytest.raises(ValueError, match="log_every_iters should be an integer >= 1, but given 0"):
            attach_tensorboard(tb, trainer, log_every_iters=0)
        with pytest.raises(ValueError, match="log_every_iters and log_every .* should not both be given, "
                                             "but given 2 and 3"):
            attach_tensorboard(tb, trainer, log_every_iters=2, log_every=3)
        with pytest.raises(TypeError, match="loss should be a PseudoLabelLoss, but given str"):
            attach_tensorboard(tb, trainer, loss="loss")
        with pytest.raises(TypeError, match="ramp should be an AlphaRamp"):
            attach_tensorboard(tb, trainer, ramp=1.0)
