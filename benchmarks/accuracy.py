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
crops for clothes). A **warm start** (``--warm-start-minutes W``) trains the recipes supervised for
their first W minutes, inside their budget; when the ``supervised`` control of the same seed runs
first, the recipes start from its state at W minutes (model, optimizer and clock) instead of
training the same W minutes again.

Methods:
  supervised  labeled images only (the control: same budget, same weak augmentation)
  online      Lee (2013): argmax pseudo-labels of the same forward pass, alpha ramping 0 -> 3 over
              --ramp-steps steps after the warm start
  mined       the model at the end of the warm start mines the unlabeled set at confidence 0.99,
              training continues with the same ramp
  fixmatch    weak/strong views, fixed threshold --tau, mu unlabeled batches, lambda_u = 1
  best        fixmatch with the options --best-threshold, --best-alignment, --best-teacher and
              --best-eval (the defaults are the composition the docs' results page recommends:
              fixed threshold, an EMA teacher that is also the evaluated model)

Usage:
    # MNIST-5k (offline), 10 labels per class, 20 minutes per method, curves to PNG
    python -m benchmarks.accuracy --dataset mnist5k --per-class 10 --methods supervised best \\
        --seeds 0 --minutes 20 --plot benchmarks/results/accuracy_mnist5k_10.png

    # Fashion-MNIST, 1,000 labels (Debian's dataset-fashion-mnist package provides the files)
    python -m benchmarks.accuracy --dataset fashion-mnist --data-root /usr/share/datasets/fashion-mnist \\
        --per-class 100 --methods supervised best --seeds 0 1 --minutes 20

Results go to ``benchmarks/results/accuracy_<dataset>_<per-class>_<minutes>min.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events, create_supervised_evaluator, create_supervised_trainer
from ignite.handlers import EMAHandler, Timer
from ignite.metrics import Accuracy
from torch import nn
from torch.utils.data import DataLoader
from torchvision.transforms import v2

import ignite_pseudolabel as ipl
from benchmarks import common
from examples.mnist import STATS, Images, Net, load_data

METHODS = ("supervised", "online", "mined", "fixmatch", "best")
SEMI = ("online", "mined", "fixmatch", "best")


def transforms_for(dataset: str, strength: str) -> tuple[Any, Any, Any]:
    """(plain, weak, strong) transforms: digits never flip; clothes (Fashion-MNIST) may."""
    mean, std = STATS[dataset]
    kind = "digits" if dataset in ("mnist5k", "mnist") else "natural"
    weak, strong = ipl.weak_strong_transforms(kind, mean=(mean,), std=(std,), size=28, strength=strength)
    plain = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize([mean], [std])])
    return plain, weak, strong


def batch_views_for(dataset: str, strength: str, views: str) -> Any:
    """The :class:`BatchViews` of ``--views batch`` (kornia) or ``batch-torchvision``; ``None`` for ``per-image``.

    The same augmentations as :func:`transforms_for`, made on whole batches in ``prepare_batch``.
    """
    if views == "per-image":
        return None
    from ignite_pseudolabel.batch_views import BatchViews

    mean, std = STATS[dataset]
    kind = "digits" if dataset in ("mnist5k", "mnist") else "natural"
    backend = "torchvision" if views == "batch-torchvision" else "kornia"
    return BatchViews(kind, mean=(mean,), std=(std,), size=28, strength=strength, backend=backend)


class Budget:
    """Training wall time of a method, across its phases (warm start, then the recipe).

    Ignite's :class:`~ignite.handlers.Timer` runs from fetching a batch to the end of its iteration,
    so validation (run after the iteration) is not counted. Every ``eval_seconds`` of training time
    (or every ``eval_steps`` optimizer steps, when given: the same points on any machine) the callback
    validates; at ``seconds`` (or ``steps``) the engine terminates.
    """

    def __init__(self, seconds: float, steps: int, eval_seconds: float, validate: Any, eval_steps: int = 0) -> None:
        self.seconds, self.steps, self.eval_seconds, self.validate = seconds, steps, eval_seconds, validate
        self.eval_steps = eval_steps
        self.offset, self.offset_steps = 0.0, 0
        self.next_eval = eval_seconds

    def attach(self, engine: Engine, until_seconds: float | None = None) -> None:
        timer = Timer(average=False)
        timer.attach(engine, start=Events.STARTED, resume=Events.GET_BATCH_STARTED, pause=Events.ITERATION_COMPLETED)
        limit = self.seconds if until_seconds is None else min(self.seconds, until_seconds)

        def check(e: Engine) -> None:
            elapsed, steps = self.offset + timer.value(), self.offset_steps + e.state.iteration
            due = steps % self.eval_steps == 0 if self.eval_steps else elapsed >= self.next_eval
            if due or elapsed >= self.seconds or steps >= self.steps:
                self.validate(elapsed, steps)
                while self.next_eval <= elapsed:
                    self.next_eval += self.eval_seconds
            if elapsed >= limit or steps >= self.steps:
                e.terminate()

        def close(e: Engine) -> None:
            self.offset += timer.value()
            self.offset_steps += e.state.iteration

        engine.add_event_handler(Events.ITERATION_COMPLETED, check)
        engine.add_event_handler(Events.COMPLETED, close)

    @property
    def exhausted(self) -> bool:
        return self.offset >= self.seconds or self.offset_steps >= self.steps


class Run:
    """One method, one seed: the model, its optimizer, the clock, the curve and the best model."""

    def __init__(self, method: str, args: argparse.Namespace, data: dict[str, Any], seed: int,
                 device: torch.device) -> None:
        self.method, self.args, self.data, self.seed, self.device = method, args, data, seed, device
        torch.manual_seed(seed)
        self.generator = torch.Generator().manual_seed(seed)
        self.model = Net().to(device)
        if args.draw_offset:  # a null control: other random draws (views, dropout), the same split, weights, shuffles
            torch.manual_seed(seed + args.draw_offset)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=args.lr)
        self.evaluated: nn.Module = self.model
        plain = data["transforms"][0]
        self.loader = functools.partial(DataLoader, num_workers=args.num_workers, pin_memory=device.type == "cuda",
                                        persistent_workers=args.num_workers > 0)
        self.validation = self.loader(Images(data["x_v"], data["y_v"], plain), batch_size=args.eval_batch_size)
        self.test = self.loader(Images(data["x_t"], data["y_t"], plain), batch_size=args.eval_batch_size)
        self.curve: list[dict[str, float]] = []
        self.best: dict[str, Any] = {"accuracy": -1.0}
        self.budget = Budget(60 * args.minutes if args.minutes else float("inf"), args.steps or 2**62,
                             60 * args.eval_minutes, self._validate, args.eval_steps)
        self.extra: dict[str, Any] = {}

    def labeled(self) -> DataLoader:
        weak = self.data["transforms"][1]
        return self.loader(Images(self.data["x_l"], self.data["y_l"], weak), batch_size=self.args.batch_size,
                           shuffle=True, generator=self.generator,
                           drop_last=len(self.data["x_l"]) >= self.args.batch_size)

    def _accuracy(self, data: DataLoader) -> float:
        evaluator = create_supervised_evaluator(self.evaluated, metrics={"accuracy": Accuracy()}, device=self.device,
                                                non_blocking=True)
        return evaluator.run(data).metrics["accuracy"]

    def _validate(self, seconds: float, steps: int) -> None:
        accuracy = self._accuracy(self.validation)
        self.curve.append({"minutes": round(seconds / 60, 3), "step": steps, "val_accuracy": accuracy})
        if self.args.test_curve:  # the test accuracy of every validated model (not used to select one)
            self.curve[-1]["test_accuracy"] = self._accuracy(self.test)
        if accuracy > self.best["accuracy"]:
            self.best = {"accuracy": accuracy, "step": steps, "minutes": round(seconds / 60, 3),
                         "state": copy.deepcopy(self.evaluated.state_dict())}

    # ---------------------------------------------------------------------------------------- phases
    def supervised(self, until_seconds: float | None = None) -> None:
        trainer = create_supervised_trainer(self.model, self.optimizer, nn.CrossEntropyLoss(), device=self.device,
                                            non_blocking=True)
        self.budget.attach(trainer, until_seconds)
        trainer.run(self.labeled(), max_epochs=2**30)

    def snapshot(self) -> dict[str, Any]:
        """The state a recipe warm-started from this run continues from."""
        return copy.deepcopy({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                              "offset": self.budget.offset, "offset_steps": self.budget.offset_steps,
                              "next_eval": self.budget.next_eval, "curve": self.curve, "best": self.best})

    def restore(self, snapshot: dict[str, Any]) -> None:
        snapshot = copy.deepcopy(snapshot)
        self.model.load_state_dict(snapshot["model"])
        self.optimizer.load_state_dict(snapshot["optimizer"])
        self.budget.offset, self.budget.offset_steps = snapshot["offset"], snapshot["offset_steps"]
        self.budget.next_eval, self.curve, self.best = snapshot["next_eval"], snapshot["curve"], snapshot["best"]

    def semi_supervised(self) -> None:
        args, data, method, device = self.args, self.data, self.method, self.device
        plain, weak, strong = data["transforms"]
        ema = None
        miner = None
        if method in ("online", "mined"):
            loss = ipl.PseudoLabelLoss()
            ramp = ipl.AlphaRamp(t1=0, t2=args.ramp_steps, alpha_f=3.0, granularity="iteration")
        else:
            ramp = ipl.AlphaRamp(t1=0, t2=0, alpha_f=1.0, granularity="iteration")  # lambda_u = 1
            teacher = None
            if method == "fixmatch":
                policy: Any = args.tau
                alignment = None
            else:
                ema = EMAHandler(self.model, momentum=args.ema_momentum)
                if args.best_eval == "ema":
                    self.evaluated = ema.ema_model
                teacher = ema.ema_model if args.best_teacher == "ema" else None
                policy = {
                    "fixed": lambda: ipl.FixedThreshold(args.tau, num_classes=10),
                    "flexmatch": lambda: ipl.FlexMatchThreshold(args.tau, num_classes=10,
                                                                num_unlabeled=len(data["x_u"])),
                    "freematch": lambda: ipl.FreeMatchThreshold(10),
                }[args.best_threshold]()
                alignment = ipl.DistributionAlignment(10) if args.best_alignment else None
            loss = ipl.PseudoLabelLoss(policy, alignment=alignment, teacher=teacher, held_back_targets=data["y_u"],
                                       views=self.batch_views())
        trainer = create_supervised_trainer(self.model, self.optimizer, loss, device=device, non_blocking=True,
                                            prepare_batch=loss.prepare_batch)
        loss.attach(trainer)
        ramp.attach(trainer)
        if ema is not None:
            ema.attach(trainer)
        unlabeled_batch = args.mu * args.batch_size
        if method == "mined":
            miner = ipl.PseudoLabelMiner(copy.deepcopy(self.model).eval(), Images(data["x_u"], None, plain),
                                         threshold=0.99, train_dataset=Images(data["x_u"], None, weak), device=device,
                                         batch_size=args.eval_batch_size, held_back_targets=data["y_u"])
            miner.attach(trainer, Events.STARTED)
            pseudo_loader = functools.partial(self.loader, batch_size=unlabeled_batch, shuffle=True,
                                              generator=self.generator)
            train_data: Any = ipl.SemiSupervisedLoader(self.labeled(), pseudo=miner.dataset, loader_fn=pseudo_loader)
        elif method != "online" and args.views != "per-image":  # uint8 images on the device, views made there
            from ignite_pseudolabel.device_data import DeviceBatches

            train_data = ipl.SemiSupervisedLoader(self.labeled(), unlabeled=DeviceBatches(
                data["x_u"].unsqueeze(1).to(device), batch_size=unlabeled_batch, drop_last=True, return_index=True,
                generator=self.generator))
        else:
            unlabeled = Images(data["x_u"], None, weak) if method == "online" \
                else ipl.WeakStrongViews(data["x_u"].unsqueeze(1), weak, strong)  # (1, 28, 28) uint8 views
            train_data = ipl.SemiSupervisedLoader(self.labeled(), unlabeled=self.loader(
                unlabeled, batch_size=unlabeled_batch, shuffle=True, generator=self.generator, drop_last=True))
        if method != "online":
            rates: list[torch.Tensor] = []
            trainer.add_event_handler(Events.ITERATION_COMPLETED(every=50),
                                      lambda e: rates.append(torch.stack([e.state.pseudo_mask_rate, _or_nan(
                                          e.state.pseudo_accuracy, e.state.pseudo_mask_rate)]).detach()))
            self.extra["pseudo_stats"] = rates
        self.budget.attach(trainer)
        trainer.run(train_data, max_epochs=2**30, epoch_length=len(self.labeled()))
        if miner is not None:
            self.extra.update(pseudo_labels=len(miner.dataset), mined_accuracy=miner.accuracy)

    def batch_views(self) -> Any:
        """``--views batch`` (kornia) or ``batch-torchvision``: the BatchViews of the recipes' unlabeled batches."""
        return batch_views_for(self.args.dataset, self.args.strength, self.args.views)

    def result(self) -> dict[str, Any]:
        final = self._accuracy(self.test)  # the model at the end of the budget
        self.evaluated.load_state_dict(self.best["state"])
        result = {
            "seed": self.seed,
            "test_accuracy": self._accuracy(self.test),
            "final_test_accuracy": final,
            "best_val_accuracy": self.best["accuracy"],
            "best_step": self.best["step"],
            "best_minutes": self.best["minutes"],
            "steps": self.budget.offset_steps,
            "minutes": round(self.budget.offset / 60, 2),
            "curve": self.curve,
        }
        stats = self.extra.pop("pseudo_stats", None)
        if stats:  # mask rate and pseudo-label accuracy every 50 steps, converted once at the end
            rows = torch.stack(stats).tolist()
            result["mask_rate"] = [round(r[0], 4) for r in rows]
            result["pseudo_accuracy"] = [None if r[1] != r[1] else round(r[1], 4) for r in rows]
        result.update(self.extra)
        return result


def _or_nan(value: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """``value``, or NaN on the device of ``like`` (mined rows have no online pseudo-label accuracy)."""
    return torch.full_like(like, float("nan")) if value is None else value.to(like.dtype)


def run_seed(args: argparse.Namespace, seed: int, device: torch.device,
             on_result: Any) -> None:
    """Runs every method for one seed; recipes warm-start from the supervised run when it is first."""
    data = prepare(args, seed)
    warm = 60 * args.warm_start_minutes
    snapshot = None
    for method in args.methods:
        run = Run(method, args, data, seed, device)
        start = time.perf_counter()
        if method == "supervised":
            if warm and any(m in SEMI for m in args.methods):
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
        on_result(method, result)
        print(f"seed {seed} {method:<10} test {result['test_accuracy']:.4f} (best val {result['best_val_accuracy']:.4f}"
              f" at {result['best_minutes']:.1f} min, {result['steps']} steps in {result['minutes']:.1f} min)",
              flush=True)


def prepare(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    train_x, train_y, test_x, test_y = data_cache(args)
    split = ipl.class_balanced_split(train_y, args.per_class, args.per_class, seed=seed)
    return {
        "x_l": train_x[split.labeled], "y_l": train_y[split.labeled],
        "x_v": train_x[split.validation], "y_v": train_y[split.validation],
        "x_u": train_x[split.unlabeled], "y_u": train_y[split.unlabeled],
        "x_t": test_x, "y_t": test_y,
        "transforms": transforms_for(args.dataset, args.strength),
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
            **_mean_std("final_test_accuracy", [r.get("final_test_accuracy") for r in results]),
            "seeds": len(accs),
            "minutes_mean": statistics.mean(r["minutes"] for r in results),
            "steps_mean": statistics.mean(r["steps"] for r in results),
        }
    return summary


def _mean_std(name: str, values: list[Any]) -> dict[str, float]:
    """``{name_mean, name_std}`` of values recorded by every run (reports made before a field existed lack it)."""
    if not values or any(v is None for v in values):
        return {}
    return {f"{name}_mean": statistics.mean(values),
            f"{name}_std": statistics.stdev(values) if len(values) > 1 else 0.0}


def plot(report: dict[str, Any], path: str) -> None:
    """Validation accuracy against training minutes, one line per run, one colour per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for i, (method, results) in enumerate(report["runs"].items()):
        for j, r in enumerate(results):
            ax.plot([p["minutes"] for p in r["curve"]], [100 * p["val_accuracy"] for p in r["curve"]],
                    color=f"C{i}", alpha=0.9 if j == 0 else 0.55, linestyle="-" if j == 0 else "--",
                    label=f"{method} (test {100 * report['summary'][method]['test_accuracy_mean']:.2f} %)"
                    if j == 0 else None)
    config = report["config"]
    ax.set_xlabel("training minutes (validation time not counted)")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(f"{config['dataset']}, {10 * config['per_class']} labels, seeds {config['seeds']}: "
                 f"{report['machine']}", fontsize=9)
    accs = [100 * p["val_accuracy"] for rs in report["runs"].values() for r in rs for p in r["curve"]]
    if accs:
        ax.set_ylim(max(min(accs), max(accs) - 25) - 1, max(accs) + 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", choices=("mnist5k", "mnist", "fashion-mnist"), default="mnist5k")
    p.add_argument("--data-root", default="data", help="torchvision root, or a folder with the four raw files")
    p.add_argument("--per-class", type=int, default=10, help="N: labeled and validation images per class")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=["supervised", "best"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--minutes", type=float, default=20.0, help="training minutes per method (0: no time limit)")
    p.add_argument("--steps", type=int, default=0, help="optimizer steps per method (0: no step limit)")
    p.add_argument("--eval-minutes", type=float, default=1.0, help="training minutes between validations")
    p.add_argument("--eval-steps", type=int, default=0,
                   help="optimizer steps between validations instead (0: use --eval-minutes); the same points on any "
                        "machine, for comparisons at equal steps")
    p.add_argument("--test-curve", action="store_true",
                   help="also record the test accuracy at every validation (for curves; never used to select)")
    p.add_argument("--warm-start-minutes", type=float, default=3.0,
                   help="recipes: supervised training first, inside the budget (0: none)")
    p.add_argument("--batch-size", type=int, default=32, help="labeled batch size B")
    p.add_argument("--mu", type=int, default=3, help="unlabeled batch size = mu * B")
    p.add_argument("--tau", type=float, default=0.95, help="confidence threshold of fixmatch and of best's policies")
    p.add_argument("--ramp-steps", type=int, default=500, help="online, mined: steps of the alpha ramp 0 -> 3")
    p.add_argument("--strength", choices=("torchvision", "fixmatch"), default="fixmatch",
                   help="strong view: weak_strong_transforms' strength (see its docs)")
    p.add_argument("--views", choices=("per-image", "batch", "batch-torchvision"), default="per-image",
                   help="fixmatch, best: unlabeled views per image in the DataLoader (WeakStrongViews), or of whole "
                        "batches on the device (DeviceBatches + BatchViews, kornia; batch-torchvision: the same data "
                        "path with BatchViews' torchvision backend, the per-image transforms, which draws what the "
                        "per-image path draws and so reproduces its runs); labeled batches are the same")
    p.add_argument("--draw-offset", type=int, default=0,
                   help="if not 0, reseed torch's global generator with seed + this after building the model: other "
                        "draws of the views, augmentations and dropout with the same split, initial weights and "
                        "shuffles (a null control for comparing data paths with benchmarks.compare_runs)")
    p.add_argument("--ema-momentum", type=float, default=0.002,
                   help="best: EMA momentum, Ignite's convention: the weight of the model in each update")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument("--best-threshold", choices=("fixed", "flexmatch", "freematch"), default="fixed",
                   help="best: threshold policy")
    p.add_argument("--best-alignment", action=argparse.BooleanOptionalAction, default=False,
                   help="best: distribution alignment")
    p.add_argument("--best-teacher", choices=("none", "ema"), default="ema", help="best: pseudo-labels from")
    p.add_argument("--best-eval", choices=("model", "ema"), default="ema", help="best: the model validated and tested")
    p.add_argument("--eval-batch-size", type=int, default=1000)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--device", default="auto", help="auto (cuda when available, else cpu), cpu, cuda, cuda:1, ...")
    p.add_argument("--plot", default="", help="PNG of the validation curves (needs matplotlib)")
    p.add_argument("--out", default="", help="JSON results file")
    p.add_argument("--merge", nargs="+", default=[], metavar="JSON",
                   help="instead of training: merge the reports of runs made in parallel (e.g. one seed each) "
                        "into --out, and --plot them")
    args = p.parse_args(argv)
    if args.merge:
        return merge(args.merge, args.out, args.plot)
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
    print(f"\n{'method':<12} {'test accuracy':>18} {'minutes':>8} {'steps':>7}")
    for method, s in report["summary"].items():
        print(f"{method:<12} {100 * s['test_accuracy_mean']:>8.2f} +- {100 * s['test_accuracy_std']:.2f} % "
              f"{s['minutes_mean']:>8.1f} {s['steps_mean']:>7.0f}")
    if args.plot:
        plot(report, args.plot)
        print(f"curves: {args.plot}")
    print(f"\nwritten to {args.out}")
    return report


def merge(paths: list[str], out: str, png: str) -> dict[str, Any]:
    """One report from several (same dataset and protocol; the runs are concatenated per method)."""
    if not out:
        raise SystemExit("--merge needs --out")
    reports = [json.loads(Path(path).read_text()) for path in paths]
    runs: dict[str, list[dict[str, Any]]] = {}
    for report in reports:
        for method, results in report["runs"].items():
            runs.setdefault(method, []).extend(results)
    merged = {**reports[0], "command": [r["command"] for r in reports], "merged_from": paths,
              "summary": summarise(runs), "runs": runs}
    merged["config"] = {**reports[0]["config"], "seeds": sorted({r["seed"] for rs in runs.values() for r in rs})}
    common.write_json(out, merged)
    if png:
        plot(merged, png)
    for method, s in merged["summary"].items():
        print(f"{method:<12} {100 * s['test_accuracy_mean']:>8.2f} +- {100 * s['test_accuracy_std']:.2f} % "
              f"({s['seeds']} seeds)")
    return merged


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
