"""Accuracy benchmark of the semi-supervised recipes at equal wall time (the seed tutorial's protocol).

Protocol: N labeled training images per class and N validation images per class (class-balanced,
seeded), the rest of the training set unlabeled, the official test set (MNIST-5k has none: the
example's fixed held-out 100 images per class); the tutorial's ``Net``, Adam. Every method gets the
same budget of **training wall time** (``--minutes``; time spent validating is not counted, time
spent loading and augmenting batches is), or of optimizer steps (``--steps``), whichever ends first.
The validation accuracy is recorded every ``--eval-minutes`` of training time (the curves); the
best-validation model is tested at the end. Several seeds; the JSON keeps every curve, and
``--plot`` draws accuracy against minutes (needs matplotlib: ``pip install -e .[benchmarks]``).

Every method trains its labeled batches with the same weak augmentation (shifts for digits; flips and
crops for clothes), on the same data path (``--views``: by default the fast path, uint8 images held
on the device and augmented there by ``BatchViews``), with the same optimiser and schedule, and every
method is evaluated through an EMA of its weights (``--eval-ema``, as FixMatch evaluates). A **warm
start** (``--warm-start-minutes W``) trains the recipes supervised for their first W minutes, inside
their budget; when the ``supervised`` control of the same seed runs first, the recipes start from its
state at W minutes (model, EMA, optimizer and clock) instead of training the same W minutes again.

Methods (pseudo-labels from the online model's weak view in the same forward pass unless stated):
  supervised    labeled images only (the control: same budget, augmentation, optimiser, evaluation)
  online        Lee (2013): argmax pseudo-labels of the same forward pass, alpha ramping 0 -> 3 over
                --ramp-steps steps after the warm start
  mined         the model at the end of the warm start mines the unlabeled set at confidence 0.99,
                training continues with the same ramp
  fixmatch      weak/strong views, fixed threshold --tau, mu unlabeled batches, lambda_u = 1
  fixmatch-ema  FixMatch + EMA teacher: the pseudo-labels come from the EMA model (``best`` before 0.3)
  flexmatch     FixMatch with FlexMatch's class-wise curriculum thresholds (upper threshold --tau)
  freematch     FreeMatch's self-adaptive thresholds and fairness term (weight 0.001)
  softmatch     SoftMatch's truncated-Gaussian weights, uniform alignment, labels from unaligned probabilities
  adamatch      AdaMatch's relative threshold (--relative-tau times the labeled confidence) and alignment

Usage:
    # MNIST-5k (offline), 10 labels per class, 20 minutes per method, curves to PNG
    python -m benchmarks.accuracy --dataset mnist5k --per-class 10 --methods supervised fixmatch-ema \\
        --seeds 0 --minutes 20 --test-curve --plot benchmarks/results/accuracy_mnist5k_10.png

    # Fashion-MNIST, 1,000 labels (Debian's dataset-fashion-mnist package provides the files)
    python -m benchmarks.accuracy --dataset fashion-mnist --data-root /usr/share/datasets/fashion-mnist \\
        --per-class 100 --methods supervised fixmatch freematch --seeds 0 1 2 --minutes 30 --test-curve

Results go to ``benchmarks/results/accuracy_<dataset>_<per-class>_<minutes>min.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events, create_supervised_trainer
from ignite.handlers import EMAHandler
from torch import nn
from torch.utils.data import DataLoader

import ignite_pseudolabel as ipl
from benchmarks import common
from benchmarks.accuracy_options import argument_parser
from benchmarks.accuracy_parts import (
    ALIASES,
    CONSISTENCY,
    MODELS,
    SEMI,
    Budget,
    ClassStats,
    accuracy_of,
    batch_views_for,
    make_optimizer,
    or_nan,
    prepare,
    pseudo_label_records,
    recipe_loss,
)
from benchmarks.accuracy_report import class_table, merge, plot, summarise
from examples.mnist import Images
from ignite_pseudolabel.device_data import DeviceBatches


class Run:
    """One method, one seed: the model, its EMA, its optimizer, the clock, the curve and the best model."""

    def __init__(self, method: str, args: argparse.Namespace, data: dict[str, Any], seed: int,
                 device: torch.device) -> None:
        self.method, self.args, self.data, self.seed, self.device = method, args, data, seed, device
        torch.manual_seed(seed)
        self.generator = torch.Generator().manual_seed(seed)
        self.model = MODELS[args.model]().to(device)
        if args.channels_last:  # NHWC convolutions; 1-channel inputs are NHWC already
            self.model = self.model.to(memory_format=torch.channels_last)
        if args.draw_offset:  # a null control: other random draws (views, dropout), the same split, weights, shuffles
            torch.manual_seed(seed + args.draw_offset)
        self.optimizer = make_optimizer(args, self.model)
        self.ema = EMAHandler(self.model, momentum=args.ema_momentum) if args.eval_ema else None
        self.evaluated: nn.Module = self.ema.ema_model if self.ema is not None else self.model
        self.views = batch_views_for(args.dataset, args.strength, args.views)
        self.curve: list[dict[str, float]] = []
        self.best: dict[str, Any] = {"accuracy": -1.0}
        self.budget = Budget(60 * args.minutes if args.minutes else float("inf"), args.steps or 2**62,
                             60 * args.eval_minutes, self._validate, args.eval_steps)
        self.class_stats: ClassStats | None = None
        self.extra: dict[str, Any] = {}

    # ------------------------------------------------------------------------------------------ data
    def labeled(self) -> Any:
        """Labeled batches with the weak augmentation: raw uint8 on the device (fast path; the views' weak view
        is applied in ``prepare_batch``) or a per-image ``DataLoader``."""
        x, y, batch = self.data["x_l"], self.data["y_l"], self.args.batch_size
        drop_last = len(x) >= batch
        if self.views is not None:
            return DeviceBatches(x.unsqueeze(1).to(self.device), y.to(self.device), batch_size=batch,
                                 drop_last=drop_last, generator=self.generator)
        return DataLoader(Images(x, y, self.data["transforms"][1]), batch_size=batch, shuffle=True,
                          generator=self.generator, drop_last=drop_last, num_workers=self.args.num_workers)

    def _prepare_labeled(self, batch: Any, device: Any = None, non_blocking: bool = False) -> Any:
        x, y = batch
        return (self.views.weak(x) if self.views is not None else x.to(self.device)), y.to(self.device)

    def _accuracy(self, split: str) -> float:
        return accuracy_of(self.evaluated, *self.data[f"{split}_float"], self.args.eval_batch_size)

    def _validate(self, seconds: float, steps: int) -> None:
        accuracy = self._accuracy("val")
        self.curve.append({"minutes": round(seconds / 60, 3), "step": steps, "val_accuracy": accuracy})
        if self.args.test_curve:  # the test accuracy of every validated model (not used to select one)
            self.curve[-1]["test_accuracy"] = self._accuracy("test")
        if self.class_stats is not None:
            self.class_stats.snapshot()
        if accuracy > self.best["accuracy"]:
            self.best = {"accuracy": accuracy, "step": steps, "minutes": round(seconds / 60, 3),
                         "state": copy.deepcopy(self.evaluated.state_dict())}

    # ---------------------------------------------------------------------------------------- phases
    def _common_handlers(self, trainer: Engine) -> None:
        if self.ema is not None:
            self.ema.attach(trainer)
        if self.args.schedule == "cosine":  # FixMatch's cos(7 pi k / 16 K), k / K the used part of the budget
            base = [group["lr"] for group in self.optimizer.param_groups]

            @trainer.on(Events.ITERATION_STARTED)
            def _set_lr(_: Engine) -> None:
                factor = math.cos(7 * math.pi / 16 * self.budget.fraction())
                for group, lr in zip(self.optimizer.param_groups, base):
                    group["lr"] = lr * factor

            @trainer.on(Events.COMPLETED)
            def _restore_lr(_: Engine) -> None:  # the next phase starts from the base rates again
                for group, lr in zip(self.optimizer.param_groups, base):
                    group["lr"] = lr

    def supervised(self, until_seconds: float | None = None) -> None:
        trainer = create_supervised_trainer(self.model, self.optimizer, nn.CrossEntropyLoss(), device=self.device,
                                            non_blocking=True, prepare_batch=self._prepare_labeled)
        self._common_handlers(trainer)
        self.budget.attach(trainer, until_seconds)
        trainer.run(self.labeled(), max_epochs=2**30)

    def snapshot(self) -> dict[str, Any]:
        """The state a recipe warm-started from this run continues from."""
        return copy.deepcopy({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                              "ema": None if self.ema is None else self.ema.ema_model.state_dict(),
                              "offset": self.budget.offset, "offset_steps": self.budget.offset_steps,
                              "next_eval": self.budget.next_eval, "curve": self.curve, "best": self.best})

    def restore(self, snapshot: dict[str, Any]) -> None:
        snapshot = copy.deepcopy(snapshot)
        self.model.load_state_dict(snapshot["model"])
        self.optimizer.load_state_dict(snapshot["optimizer"])
        if self.ema is not None and snapshot["ema"] is not None:
            self.ema.ema_model.load_state_dict(snapshot["ema"])
        self.budget.offset, self.budget.offset_steps = snapshot["offset"], snapshot["offset_steps"]
        self.budget.next_eval, self.curve, self.best = snapshot["next_eval"], snapshot["curve"], snapshot["best"]

    def semi_supervised(self) -> None:
        args, data, method, device = self.args, self.data, self.method, self.device
        if method in ("online", "mined"):
            loss = ipl.PseudoLabelLoss(views=self.views)
            ramp = ipl.AlphaRamp(t1=0, t2=args.ramp_steps, alpha_f=3.0, granularity="iteration")
        else:
            ramp = ipl.AlphaRamp(t1=0, t2=0, alpha_f=1.0, granularity="iteration")  # lambda_u = 1
            teacher = self.evaluated if self.ema is not None else None
            loss = recipe_loss(method, args, len(data["x_u"]), teacher, data["y_u"], self.views, self.model)
        trainer = create_supervised_trainer(self.model, self.optimizer, loss, device=device, non_blocking=True,
                                            prepare_batch=loss.prepare_batch)
        loss.attach(trainer, Events.ITERATION_COMPLETED(every=50))
        ramp.attach(trainer)
        self._common_handlers(trainer)
        train_data, miner = training_data(method, args, data, self.views, self.labeled(), self.evaluated,
                                          self.generator, device)
        if miner is not None:
            miner.attach(trainer, Events.STARTED)
        if method in CONSISTENCY:
            rates: list[torch.Tensor] = []
            trainer.add_event_handler(Events.ITERATION_COMPLETED(every=50),
                                      lambda e: rates.append(torch.stack([e.state.pseudo_mask_rate, or_nan(
                                          e.state.pseudo_accuracy, e.state.pseudo_mask_rate)]).detach()))
            self.extra["pseudo_stats"] = rates
            self.class_stats = ClassStats(loss, data["y_u"], device)
            trainer.add_event_handler(Events.ITERATION_COMPLETED, self.class_stats)
        self.budget.attach(trainer)
        trainer.run(train_data, max_epochs=2**30, epoch_length=len(self.labeled()))
        if miner is not None:
            self.extra.update(pseudo_labels=len(miner.dataset), mined_accuracy=miner.accuracy)

    def result(self) -> dict[str, Any]:
        final = self._accuracy("test")  # the model at the end of the budget
        self.evaluated.load_state_dict(self.best["state"])
        result = {
            "seed": self.seed,
            "test_accuracy": self._accuracy("test"),
            "final_test_accuracy": final,
            "best_val_accuracy": self.best["accuracy"],
            "best_step": self.best["step"],
            "best_minutes": self.best["minutes"],
            "steps": self.budget.offset_steps,
            "minutes": round(self.budget.offset / 60, 2),
            "curve": self.curve,
        }
        result.update(pseudo_label_records(self.extra.pop("pseudo_stats", None), self.class_stats))
        result.update(self.extra)
        return result


def training_data(method: str, args: argparse.Namespace, data: dict[str, Any], views: Any, labeled: Any,
                  evaluated: nn.Module, generator: torch.Generator, device: torch.device) -> tuple[Any, Any]:
    """The recipe's training stream (labeled + unlabeled or mined batches) and, for ``mined``, its miner (to be
    attached to the trainer at ``STARTED``, so that it mines with the warm-started model)."""
    weak, strong = data["transforms"][1:]
    miner = None
    unlabeled_batch = args.mu * args.batch_size
    if method == "mined":
        # mines the normalised images; trains on them with the weak view (raw uint8 through the views on the
        # fast path, per-image transforms otherwise)
        miner = ipl.PseudoLabelMiner(copy.deepcopy(evaluated).eval(), data["x_u_float"], threshold=0.99,
                                     device=device, batch_size=args.eval_batch_size, held_back_targets=data["y_u"],
                                     train_dataset=None if views is not None else Images(data["x_u"], None, weak))
        raw = data["x_u"].unsqueeze(1).to(device)
        pseudo_loader = (
            DeviceBatches(raw, batch_size=unlabeled_batch, generator=generator).pseudo_loader_fn()
            if views is not None else functools.partial(
                DataLoader, batch_size=unlabeled_batch, shuffle=True, generator=generator))
        train_data: Any = ipl.SemiSupervisedLoader(labeled, pseudo=miner.dataset, loader_fn=pseudo_loader)
    elif views is not None:  # uint8 images on the device, views made there
        unlabeled: Any = DeviceBatches(data["x_u"].unsqueeze(1).to(device), batch_size=unlabeled_batch,
                                       drop_last=True, return_index=True, generator=generator)
        train_data = ipl.SemiSupervisedLoader(labeled, unlabeled=unlabeled)
    else:
        unlabeled = Images(data["x_u"], None, weak) if method == "online" \
            else ipl.WeakStrongViews(data["x_u"].unsqueeze(1), weak, strong)  # (1, 28, 28) uint8 views
        train_data = ipl.SemiSupervisedLoader(labeled, unlabeled=DataLoader(
            unlabeled, batch_size=unlabeled_batch, shuffle=True, generator=generator, drop_last=True,
            num_workers=args.num_workers))
    return train_data, miner


def run_seed(args: argparse.Namespace, seed: int, device: torch.device,
             on_result: Any) -> None:
    """Runs every method for one seed; recipes warm-start from the supervised run when it is first."""
    data = prepare(args, seed, device)
    warm = 60 * args.warm_start_minutes
    snapshot = None
    for name in args.methods:
        method = ALIASES.get(name, name)
        run = Run(method, args, data, seed, device)
        start = time.perf_counter()
        if method == "supervised":
            if warm and any(ALIASES.get(m, m) in SEMI for m in args.methods):
                run.supervised(until_seconds=warm)
                snapshot = run.snapshot()
            if not run.budget.exhausted:
                run.supervised()
        else:
            if snapshot is not None:
                run.restore(snapshot)
            elif warm:
                run.supervised(until_seconds=warm)
            if not run.budget.exhausted:
                run.semi_supervised()
        result = run.result()
        result["wall_seconds"] = round(time.perf_counter() - start, 1)
        on_result(name, result)
        print(f"seed {seed} {name:<12} test {result['test_accuracy']:.4f} (best val {result['best_val_accuracy']:.4f}"
              f" at {result['best_minutes']:.1f} min, {result['steps']} steps in {result['minutes']:.1f} min)",
              flush=True)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argument_parser(__doc__)
    args = p.parse_args(argv)
    if args.merge:
        return merge(args.merge, args.out, args.plot)
    if args.class_table:
        return class_table(json.loads(Path(args.class_table).read_text()))
    if not args.minutes and not args.steps:
        p.error("give a budget: --minutes or --steps")
    if not args.out:
        budget = f"{args.minutes:g}min" if args.minutes else f"{args.steps}steps"
        args.out = f"benchmarks/results/accuracy_{args.dataset}_{args.per_class}_{budget}.json"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = common.resolve_device(args.device)
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in args.methods}

    def on_result(method: str, result: dict[str, Any]) -> None:
        runs[method].append(result)
        write(args, runs, device)

    for seed in args.seeds:
        run_seed(args, seed, device, on_result)
    report = write(args, runs, device)
    print(f"\n{'method':<13} {'test accuracy (mean +- SE)':>27} {'minus control':>16} {'minutes':>8} {'steps':>7}")
    for method, s in report["summary"].items():
        diff = f"{100 * s['minus_control_mean']:+.2f} +- {100 * s['minus_control_se']:.2f}" \
            if "minus_control_mean" in s else ""
        print(f"{method:<13} {100 * s['test_accuracy_mean']:>17.2f} +- {100 * s['test_accuracy_se']:.2f} % "
              f"{diff:>16} {s['minutes_mean']:>8.1f} {s['steps_mean']:>7.0f}")
    if args.plot:
        plot(report, args.plot)
        print(f"curves: {args.plot}")
    print(f"\nwritten to {args.out}")
    return report


def write(args: argparse.Namespace, runs: dict[str, list[dict[str, Any]]], device: torch.device) -> dict[str, Any]:
    env = common.environment(device)
    report = {
        "command": " ".join(env["command"]),
        "config": vars(args),
        "machine": env["device_name"],
        "environment": env,
        "summary": summarise({m: r for m, r in runs.items() if r}),
        "runs": runs,
    }
    common.write_json(args.out, report)
    return report


if __name__ == "__main__":
    main()
