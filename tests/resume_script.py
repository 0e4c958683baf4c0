"""A semi-supervised run that can be killed and resumed (used by test_resume.py as a subprocess).

Usage: python tests/resume_script.py OUT_DIR [--kill-at-iteration N] [--resume]

Mined pseudo-labels re-mined every 2 epochs, alpha ramping over epochs 1..8, dropout, random
augmentation and shuffled loaders: every source of randomness that a resume must restore. The
final weights go to OUT_DIR/final.pt.
"""

import argparse
import functools
import os
import signal
from pathlib import Path

import torch
from ignite.engine import Events, create_supervised_evaluator, create_supervised_trainer
from ignite.metrics import Accuracy
from torch import nn
from torch.utils.data import DataLoader, Dataset

import ignite_pseudolabel as ipl


class Noisy(Dataset):
    """Inputs plus random noise drawn from the global torch generator (an augmentation)."""

    def __init__(self, x, y=None):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        x = self.x[i] + 0.1 * torch.randn_like(self.x[i])
        return x if self.y is None else (x, self.y[i])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--kill-at-iteration", type=int, default=0)
    p.add_argument("--resume", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(0)

    g = torch.Generator().manual_seed(1)
    centers = torch.randn(3, 6, generator=g) * 2
    y = torch.arange(330) % 3
    x = centers[y] + torch.randn(330, 6, generator=g)
    x_l, y_l, x_v, y_v, x_u = x[:15], y[:15], x[15:30], y[15:30], x[30:]

    model = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 3))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    loss = ipl.PseudoLabelLoss()
    trainer = create_supervised_trainer(model, optimizer, loss, prepare_batch=loss.prepare_batch)
    loss.attach(trainer)
    ramp = ipl.AlphaRamp(t1=1, t2=8, alpha_f=2.0)
    ramp.attach(trainer)
    miner = ipl.PseudoLabelMiner(model, x_u, threshold=0.7, train_dataset=Noisy(x_u), batch_size=64)
    miner.attach(trainer, Events.EPOCH_COMPLETED(every=2))
    labeled = DataLoader(Noisy(x_l, y_l), batch_size=5, shuffle=True)
    data = ipl.SemiSupervisedLoader(labeled, pseudo=miner.dataset, seed=7,
                                    loader_fn=functools.partial(DataLoader, batch_size=40, shuffle=True))
    evaluator = create_supervised_evaluator(model, metrics={"accuracy": Accuracy()})
    best = ipl.BestValCheckpoint(
        evaluator, model, Path(args.out) / "checkpoints", data=[(x_v, y_v)],
        resume_objects={"trainer": trainer, "model": model, "optimizer": optimizer, "alpha": ramp,
                        "miner": miner, "data": data, "loss": loss, "rng": ipl.RNGState()})
    best.attach(trainer)
    if args.kill_at_iteration:
        trainer.add_event_handler(Events.ITERATION_COMPLETED(once=args.kill_at_iteration),
                                  lambda _: os.kill(os.getpid(), signal.SIGKILL))
    if args.resume:
        path = best.resume()
        print(f"resumed from {path.name} at epoch {trainer.state.epoch}, alpha {trainer.state.alpha}, "
              f"{len(miner.dataset)} pseudo-labels after {miner.rounds} rounds", flush=True)
    trainer.run(data, max_epochs=10)
    torch.save(model.state_dict(), Path(args.out) / "final.pt")
    print(f"done: epoch {trainer.state.epoch}, iteration {trainer.state.iteration}, "
          f"{len(miner.dataset)} pseudo-labels, rounds {miner.rounds}", flush=True)


if __name__ == "__main__":
    main()
