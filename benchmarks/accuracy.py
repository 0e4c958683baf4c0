"""Accuracy benchmark of the semi-supervised recipes (the protocol of the seed tutorial).

Protocol: N labeled training images per class and N validation images per class (class-balanced,
seeded), the rest of the training set unlabeled, the official test set (MNIST-5k has none: the
example's fixed held-out 100 images per class); the tutorial's ``Net``; every method gets the same
budget of optimizer steps, is validated every ``--eval-every`` steps, and its best-validation model
is tested; several seeds, mean and standard deviation; wall time recorded.

Methods:
  supervised  labeled images only (with the dataset's weak augmentation)
  online      Lee (2013): argmax pseudo-labels of the same forward pass, alpha ramp to 3
  mined       the tutorial's method: the best supervised model mines the unlabeled set at
              confidence 0.99, training continues from it with the ramp (its budget comes after
              the supervised run)
  fixmatch    weak/strong views (RandAugment + Cutout), fixed threshold 0.95, mu unlabeled batches
  best        fixmatch with the options of --best-threshold (FlexMatch by default),
              --best-alignment (on by default), --best-teacher and --best-eval (an EMA model
              as teacher or as the evaluated model; off by default: on the CPU budget's few
              hundred steps an EMA lags behind)

Usage:
    # quick check on MNIST-5k (offline)
    python benchmarks/accuracy.py --dataset mnist5k --per-class 10 --budget cpu

    # Fashion-MNIST, 1,000 labels (Debian's dataset-fashion-mnist package provides the files)
    python benchmarks/accuracy.py --dataset fashion-mnist --data-root /usr/share/datasets/fashion-mnist \\
        --per-class 100 --budget cpu --seeds 0 1 2

    # the full budget (long: for a GPU)
    python benchmarks/accuracy.py --dataset fashion-mnist --data-root DIR --per-class 100 --budget full

Results go to ``benchmarks/results/accuracy_<dataset>_<per-class>_<budget>.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import platform
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import ignite
import torch
from ignite.engine import Events, create_supervised_evaluator, create_supervised_trainer
from ignite.handlers import EMAHandler
from ignite.metrics import Accuracy
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

import ignite_pseudolabel as ipl

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from mnist_pseudo_label import STATS, Net, load_data  # noqa: E402  (the example's model and data)

METHODS = ("supervised", "online", "mined", "fixmatch", "best")
#: optimizer steps per method and validation interval, per budget
BUDGETS = {
    "cpu": {"steps": 500, "eval_every": 50, "batch_size": 32, "mu": 3, "ema_momentum": 0.01},
    "full": {"steps": 20000, "eval_every": 500, "batch_size": 64, "mu": 7, "ema_momentum": 0.001},
}


class Images(Dataset):
    """``uint8`` images ``(N, 28, 28)`` through a transform; with targets, ``(x, y)`` pairs."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor | None, transform: Any) -> None:
        self.images, self.targets, self.transform = images, targets, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> Any:
        x = self.transform(self.images[i].unsqueeze(0))
        return x if self.targets is None else (x, int(self.targets[i]))


def transforms_for(dataset: str) -> tuple[Any, Any, Any]:
    """(plain, weak, strong) transforms: digits never flip; clothes (Fashion-MNIST) may."""
    mean, std = STATS[dataset]
    kind = "digits" if dataset in ("mnist5k", "mnist") else "natural"
    weak, strong = ipl.weak_strong_transforms(kind, mean=(mean,), std=(std,), size=28)
    plain = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize([mean], [std])])
    return plain, weak, strong


def run_one(method: str, args: argparse.Namespace, data: dict[str, Any], seed: int, device: torch.device,
            baseline: dict[str, torch.Tensor] | None) -> dict[str, Any]:
    steps, eval_every = args.steps, args.eval_every
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    plain, weak, strong = data["transforms"]
    loader = functools.partial(DataLoader, num_workers=args.num_workers, pin_memory=device.type == "cuda",
                               persistent_workers=args.num_workers > 0)
    labeled = loader(Images(data["x_l"], data["y_l"], weak), batch_size=args.batch_size, shuffle=True,
                     generator=generator, drop_last=len(data["x_l"]) >= args.batch_size)
    validation = loader(Images(data["x_v"], data["y_v"], plain), batch_size=args.eval_batch_size)
    test = loader(Images(data["x_t"], data["y_t"], plain), batch_size=args.eval_batch_size)
    model = Net().to(device)
    if method == "mined":
        model.load_state_dict(baseline)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    evaluated = model
    miner = None
    if method == "supervised":
        trainer = create_supervised_trainer(model, optimizer, nn.CrossEntropyLoss(), device=device, non_blocking=True)
        train_data: Any = labeled
    else:
        ema = None
        if method == "online":
            loss = ipl.PseudoLabelLoss()
            ramp = ipl.AlphaRamp(t1=steps // 5, t2=3 * steps // 5, alpha_f=3.0, granularity="iteration")
            unlabeled: Any = Images(data["x_u"], None, weak)
        elif method == "mined":
            loss = ipl.PseudoLabelLoss()
            ramp = ipl.AlphaRamp(t1=0, t2=steps // 2, alpha_f=3.0, granularity="iteration")
        else:
            unlabeled = ipl.WeakStrongViews(_Raw(data["x_u"]), weak, strong)
            ramp = ipl.AlphaRamp(t1=0, t2=0, alpha_f=1.0, granularity="iteration")  # lambda_u = 1
            if method == "fixmatch":
                loss = ipl.PseudoLabelLoss(threshold=args.tau, held_back_targets=data["y_u"])
            else:
                ema = EMAHandler(model, momentum=args.ema_momentum)
                if args.best_eval == "ema":
                    evaluated = ema.ema_model
                policy: Any = {
                    "fixed": lambda: ipl.FixedThreshold(args.tau, num_classes=10),
                    "flexmatch": lambda: ipl.FlexMatchThreshold(args.tau, num_classes=10,
                                                                num_unlabeled=len(data["x_u"])),
                    "freematch": lambda: ipl.FreeMatchThreshold(10),
                }[args.best_threshold]()
                loss = ipl.PseudoLabelLoss(
                    policy, alignment=ipl.DistributionAlignment(10) if args.best_alignment else None,
                    teacher=ema.ema_model if args.best_teacher == "ema" else None, held_back_targets=data["y_u"])
        trainer = create_supervised_trainer(model, optimizer, loss, device=device, non_blocking=True,
                                            prepare_batch=loss.prepare_batch)
        loss.attach(trainer)
        ramp.attach(trainer)
        if ema is not None:
            ema.attach(trainer)
        if method == "mined":
            teacher = Net().to(device)
            teacher.load_state_dict(baseline)
            miner = ipl.PseudoLabelMiner(teacher, Images(data["x_u"], None, plain), threshold=0.99,
                                         train_dataset=Images(data["x_u"], None, weak), device=device,
                                         batch_size=args.eval_batch_size, true_labels=data["y_u"])
            miner.attach(trainer, Events.STARTED)
            train_data = ipl.SemiSupervisedLoader(labeled, pseudo=miner.dataset, loader_fn=functools.partial(
                loader, batch_size=args.mu * args.batch_size, shuffle=True, generator=generator),
                epoch_length=eval_every)
        else:
            train_data = ipl.SemiSupervisedLoader(
                labeled, unlabeled=loader(unlabeled, batch_size=args.mu * args.batch_size, shuffle=True,
                                          generator=generator, drop_last=True), epoch_length=eval_every)

    evaluator = create_supervised_evaluator(evaluated, metrics={"accuracy": Accuracy()}, device=device,
                                            non_blocking=True)
    tester = create_supervised_evaluator(evaluated, metrics={"accuracy": Accuracy()}, device=device)
    pseudo_accuracy: list[float] = []
    if method in ("online", "fixmatch", "best"):
        trainer.add_event_handler(Events.ITERATION_COMPLETED(every=eval_every), lambda e: pseudo_accuracy.append(
            float(e.state.pseudo_accuracy)) if e.state.pseudo_accuracy is not None else None)
    with tempfile.TemporaryDirectory() as tmp:
        best = ipl.BestValCheckpoint(evaluator, evaluated, tmp, data=validation)
        best.attach(trainer)
        start = time.perf_counter()
        trainer.run(train_data, max_epochs=math.ceil(steps / eval_every), epoch_length=eval_every)
        seconds = time.perf_counter() - start
        best.load_best(evaluated)
        state = {k: v.clone() for k, v in evaluated.state_dict().items()}
    result = {
        "test_accuracy": tester.run(test).metrics["accuracy"],
        "best_val_accuracy": best.best_score,
        "best_step": _best_step(best.best_path, eval_every),
        "steps": trainer.state.iteration,
        "seconds": round(seconds, 1),
    }
    if miner is not None:
        result.update(pseudo_labels=len(miner.dataset), pseudo_label_accuracy=miner.accuracy)
    if pseudo_accuracy:
        result["online_pseudo_accuracy_last"] = pseudo_accuracy[-1]
    return {"result": result, "state": state}


def _best_step(path: Path | None, eval_every: int) -> int | None:
    """Optimizer step of the kept model: its file, ``best_model_{epoch}_accuracy=...``, names the epoch."""
    match = re.search(r"_(\d+)_accuracy=", path.name) if path is not None else None
    return int(match.group(1)) * eval_every if match else None


class _Raw(Dataset):
    """Unlabeled ``uint8`` images as ``(1, 28, 28)`` tensors, for the view transforms."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i].unsqueeze(0)


def prepare(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    train_x, train_y, test_x, test_y = data_cache(args)
    split = ipl.class_balanced_split(train_y, args.per_class, args.per_class, seed=seed)
    return {
        "x_l": train_x[split.labeled], "y_l": train_y[split.labeled],
        "x_v": train_x[split.validation], "y_v": train_y[split.validation],
        "x_u": train_x[split.unlabeled], "y_u": train_y[split.unlabeled],
        "x_t": test_x, "y_t": test_y,
        "transforms": transforms_for(args.dataset),
    }


@functools.lru_cache(maxsize=1)
def _load(dataset: str, data_root: str, cache: str) -> tuple[torch.Tensor, ...]:
    return load_data(dataset, data_root, Path(cache))


def data_cache(args: argparse.Namespace) -> tuple[torch.Tensor, ...]:
    return _load(args.dataset, args.data_root, str(Path(args.out).parent / "data"))


def summarise(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    summary = {}
    for method, results in runs.items():
        accs = [r["test_accuracy"] for r in results]
        summary[method] = {
            "test_accuracy_mean": statistics.mean(accs),
            "test_accuracy_std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
            "seeds": len(accs),
            "seconds_mean": statistics.mean(r["seconds"] for r in results),
            "steps": results[0]["steps"],
        }
    return summary


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", choices=("mnist5k", "mnist", "fashion-mnist"), default="mnist5k")
    p.add_argument("--data-root", default="data", help="torchvision root, or a folder with the four raw files")
    p.add_argument("--per-class", type=int, default=10, help="N: labeled and validation images per class")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--budget", choices=tuple(BUDGETS), default="cpu", help=f"steps and eval interval: {BUDGETS}")
    p.add_argument("--steps", type=int, default=0, help="optimizer steps per method (0: the budget's)")
    p.add_argument("--eval-every", type=int, default=0, help="steps between validations (0: the budget's)")
    p.add_argument("--batch-size", type=int, default=0, help="labeled batch size B (0: the budget's)")
    p.add_argument("--mu", type=int, default=0, help="unlabeled batch size = mu * B (0: the budget's)")
    p.add_argument("--tau", type=float, default=0.95, help="FixMatch confidence threshold")
    p.add_argument("--ema-momentum", type=float, default=0.0,
                   help="EMA momentum, Ignite's convention: the weight of the model (0: the budget's)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument("--best-threshold", choices=("fixed", "flexmatch", "freematch"), default="flexmatch",
                   help="best: threshold policy")
    p.add_argument("--best-alignment", action=argparse.BooleanOptionalAction, default=True,
                   help="best: distribution alignment")
    p.add_argument("--best-teacher", choices=("none", "ema"), default="none", help="best: pseudo-labels from")
    p.add_argument("--best-eval", choices=("model", "ema"), default="model",
                   help="best: the model validated and tested")
    p.add_argument("--eval-batch-size", type=int, default=1000)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", default="", help="JSON results file")
    args = p.parse_args(argv)
    for name in ("steps", "eval_every", "batch_size", "mu", "ema_momentum"):
        if not getattr(args, name):
            setattr(args, name, BUDGETS[args.budget][name])
    if not args.out:
        args.out = f"benchmarks/results/accuracy_{args.dataset}_{args.per_class}_{args.budget}.json"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in args.methods}
    for seed in args.seeds:
        data = prepare(args, seed)
        baseline = None
        for method in args.methods:
            if method == "mined" and baseline is None:
                baseline = run_one("supervised", args, data, seed, device, None)["state"]
            out = run_one(method, args, data, seed, device, baseline)
            if method == "supervised":
                baseline = out["state"]
            runs[method].append({"seed": seed, **out["result"]})
            print(f"seed {seed} {method:<10} test {out['result']['test_accuracy']:.4f} "
                  f"({out['result']['seconds']:.0f} s)", flush=True)
            write(args, runs, device)
    report = write(args, runs, device)
    print(f"\n{'method':<12} {'test accuracy':>18} {'seconds':>8} {'steps':>6}")
    for method, s in report["summary"].items():
        print(f"{method:<12} {100 * s['test_accuracy_mean']:>8.2f} +- {100 * s['test_accuracy_std']:.2f} % "
              f"{s['seconds_mean']:>8.0f} {s['steps']:>6}")
    print(f"\nwritten to {args.out}")
    return report


def write(args: argparse.Namespace, runs: dict[str, list[dict[str, Any]]], device: torch.device) -> dict[str, Any]:
    report = {
        "command": "python " + " ".join([sys.argv[0], *sys.argv[1:]]),
        "config": vars(args),
        "machine": torch.cuda.get_device_name(device) if device.type == "cuda"
        else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
        "versions": {"torch": torch.__version__, "ignite": ignite.__version__, "ignite_pseudolabel": ipl.__version__},
        "summary": summarise({m: r for m, r in runs.items() if r}),
        "runs": runs,
    }
    Path(args.out).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
