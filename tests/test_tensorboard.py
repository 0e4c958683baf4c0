import pytest
import torch
from helpers import blobs, loaders, mlp, read_scalars
from ignite.engine import Events, create_supervised_evaluator, create_supervised_trainer
from ignite.handlers import TensorboardLogger
from ignite.metrics import Accuracy
from torch.utils.data import DataLoader, TensorDataset

from ignite_pseudolabel import AlphaRamp, PseudoLabelLoss, PseudoLabelMiner, SemiSupervisedLoader, attach_tensorboard


def test_training_validation_and_mining_scalars_are_written(tmp_path):
    labeled, x_u, y_u = loaders()
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = PseudoLabelLoss()
    trainer = create_supervised_trainer(model, optimizer, loss, prepare_batch=loss.prepare_batch)
    loss.attach(trainer)
    AlphaRamp(t1=1, t2=2, alpha_f=2.0).attach(trainer)
    miner = PseudoLabelMiner(model, x_u, threshold=0.5, true_labels=y_u)
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
