"""The parts of ``benchmarks/accuracy.py`` that are not the run itself: the methods, their losses and views,
the optimiser, the wall-time budget, the per-class statistics and the data of a seed.

``benchmarks/views_check.py`` builds its views with the same :func:`transforms_for` and
:func:`batch_views_for`, so that it checks exactly what the benchmark trains on.
"""

from __future__ import annotations

import argparse
import functools
import math
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from ignite.handlers import Timer
from torch import nn
from torchvision.transforms import v2

import ignite_pseudolabel as ipl
from benchmarks.accuracy_report import NUM_CLASSES
from examples.mnist import STATS, BNNet, Net, load_data
from ignite_pseudolabel.labels import AlignedLabels
from ignite_pseudolabel.thresholds import RelativeThreshold
from ignite_pseudolabel.weighting import SoftMatchWeights

METHODS = ("supervised", "online", "mined", "fixmatch", "fixmatch-ema", "flexmatch", "freematch", "softmatch",
           "adamatch")
#: former names of methods (reports made before 0.3 use them)
ALIASES = {"best": "fixmatch-ema"}
SEMI = METHODS[1:]
CONSISTENCY = METHODS[3:]
MODELS = {"net": Net, "bn": BNNet}


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


def recipe_loss(method: str, args: argparse.Namespace, num_unlabeled: int, teacher: nn.Module | None,
                held_back: torch.Tensor, views: Any, model: nn.Module | None = None) -> ipl.PseudoLabelLoss:
    """The :class:`PseudoLabelLoss` of a consistency method: its parts, one object per slot.

    With ``--weak-forward no-grad`` a method whose pseudo-labels come from the trained model itself
    gets ``teacher=model``: the weak views go through the model in a forward of their own, without
    gradients, instead of in the training forward (the same pseudo-labels and gradients for a model
    without BatchNorm, whose normalisation would see the weak rows apart; no backward through them).
    """
    c = NUM_CLASSES
    parts = {
        "fixmatch": lambda: {"threshold": args.tau},
        "fixmatch-ema": lambda: {"threshold": args.tau, "teacher": teacher},
        "flexmatch": lambda: {
            "threshold": ipl.FlexMatchThreshold(args.tau, num_classes=c, num_unlabeled=num_unlabeled)},
        "freematch": lambda: {"threshold": ipl.FreeMatchThreshold(c),
                              "fairness": ipl.SelfAdaptiveFairness(c, weight=args.fairness_weight)},
        "softmatch": lambda: {"threshold": SoftMatchWeights(c),
                              "labels": AlignedLabels(ipl.DistributionAlignment(c), targets_from_aligned=False)},
        "adamatch": lambda: {"threshold": RelativeThreshold(args.relative_tau),
                             "alignment": ipl.DistributionAlignment(c)},
    }[method]()
    if getattr(args, "weak_forward", "joint") == "no-grad" and "teacher" not in parts:
        parts["teacher"] = model
    return ipl.PseudoLabelLoss(**parts, held_back_targets=held_back, views=views)


def make_optimizer(args: argparse.Namespace, model: nn.Module) -> torch.optim.Optimizer:
    """Adam, or SGD with Nesterov momentum, weight decay on the weights but not on BatchNorm and biases (FixMatch)."""
    lr = args.lr if args.lr is not None else (1e-3 if args.optimizer == "adam" else 0.03)
    if args.optimizer == "adam":  # fused: the same update in one kernel (faster on CPU)
        return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=args.weight_decay, fused=args.fused)
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    return torch.optim.SGD([{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay}], lr=lr,
                           momentum=0.9, nesterov=True)


class Budget:
    """Training wall time of a method, across its phases (warm start, then the recipe).

    Ignite's :class:`~ignite.handlers.Timer` runs from fetching a batch to the end of its iteration,
    so validation (run after the iteration) is not counted. Every ``eval_seconds`` of training time
    (or every ``eval_steps`` optimizer steps, when given: the same points on any machine) the callback
    validates; at ``seconds`` (or ``steps``) the engine terminates. :meth:`fraction` is the part of
    the budget used so far (for schedules).
    """

    def __init__(self, seconds: float, steps: int, eval_seconds: float, validate: Any, eval_steps: int = 0) -> None:
        self.seconds, self.steps, self.eval_seconds, self.validate = seconds, steps, eval_seconds, validate
        self.eval_steps = eval_steps
        self.offset, self.offset_steps = 0.0, 0
        self.next_eval = eval_seconds
        self._timer: Timer | None = None
        self._engine: Engine | None = None

    def fraction(self) -> float:
        """The used part of the budget, in [0, 1]: of the time (or of the steps, when that budget is smaller)."""
        elapsed = self.offset + (self._timer.value() if self._timer is not None else 0.0)
        steps = self.offset_steps + (self._engine.state.iteration if self._engine is not None else 0)
        by_time = elapsed / self.seconds if math.isfinite(self.seconds) else 0.0
        by_steps = steps / self.steps if self.steps < 2**62 else 0.0
        return min(1.0, max(by_time, by_steps))

    def attach(self, engine: Engine, until_seconds: float | None = None) -> None:
        timer = Timer(average=False)
        timer.attach(engine, start=Events.STARTED, resume=Events.GET_BATCH_STARTED, pause=Events.ITERATION_COMPLETED)
        self._timer, self._engine = timer, engine
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
            self._timer = self._engine = None

        engine.add_event_handler(Events.ITERATION_COMPLETED, check)
        engine.add_event_handler(Events.COMPLETED, close)

    @property
    def exhausted(self) -> bool:
        return self.offset >= self.seconds or self.offset_steps >= self.steps


class ClassStats:
    """Per true class: how many unlabeled predictions, their weight (mask) sum and their correct weight sum.

    Accumulated on the device at every iteration from the loss's statistics record (no host
    synchronisation), and snapshotted at every validation, so that the report can give per-class
    mask rates and pseudo-label accuracies over any part of training.
    """

    def __init__(self, loss: ipl.PseudoLabelLoss, held_back: torch.Tensor, device: torch.device) -> None:
        self.loss, self.held_back = loss, held_back.to(device)
        self.counts = torch.zeros(3, NUM_CLASSES, device=device)
        self.snapshots: list[torch.Tensor] = []

    def __call__(self, engine: Engine) -> None:
        stats = self.loss.criterion.stats
        index = getattr(getattr(engine.state.batch, "unlabeled", None), "sample_index", None)
        if stats is None or stats.weights is None or index is None:
            return
        truth = self.held_back[index.to(self.held_back.device)]
        weights = stats.weights.float()
        rows = torch.stack([torch.ones_like(weights), weights, weights * (stats.labels == truth)])
        self.counts.index_add_(1, truth, rows)

    def snapshot(self) -> None:
        self.snapshots.append(self.counts.clone())


def prepare(args: argparse.Namespace, seed: int, device: torch.device) -> dict[str, Any]:
    train_x, train_y, test_x, test_y = data_cache(args)
    split = ipl.class_balanced_split(train_y, args.per_class, args.per_class, seed=seed)
    mean, std = STATS[args.dataset]

    def normalised(x: torch.Tensor) -> torch.Tensor:  # evaluation inputs, once, on the device
        return ((x.unsqueeze(1).float() / 255 - mean) / std).to(device)

    return {
        "x_l": train_x[split.labeled], "y_l": train_y[split.labeled],
        "x_u": train_x[split.unlabeled], "y_u": train_y[split.unlabeled],
        "val_float": (normalised(train_x[split.validation]), train_y[split.validation].to(device)),
        "test_float": (normalised(test_x), test_y.to(device)),
        "x_u_float": normalised(train_x[split.unlabeled]),
        "transforms": transforms_for(args.dataset, args.strength),
    }


@functools.lru_cache(maxsize=1)
def _load(dataset: str, data_root: str, cache: str) -> tuple[torch.Tensor, ...]:
    return load_data(dataset, data_root, Path(cache))


def data_cache(args: argparse.Namespace) -> tuple[torch.Tensor, ...]:
    return _load(args.dataset, args.data_root, str(Path(args.out).parent / "data"))


def or_nan(value: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """``value``, or NaN on the device of ``like`` (mined rows have no online pseudo-label accuracy)."""
    return torch.full_like(like, float("nan")) if value is None else value.to(like.dtype)


def pseudo_label_records(stats: list[torch.Tensor] | None, class_stats: ClassStats | None) -> dict[str, Any]:
    """The report's pseudo-label fields, converted to Python once at the end of a run: ``mask_rate`` and
    ``pseudo_accuracy`` every 50 steps, and ``class_counts``, per true class and cumulative at every validation,
    ``[predictions, weight sum, correct weight sum]``."""
    records: dict[str, Any] = {}
    if stats:
        rows = torch.stack(stats).tolist()
        records["mask_rate"] = [round(r[0], 4) for r in rows]
        records["pseudo_accuracy"] = [None if r[1] != r[1] else round(r[1], 4) for r in rows]
    if class_stats is not None and class_stats.snapshots:
        records["class_counts"] = [[[round(v, 2) for v in row] for row in snap.tolist()]
                                   for snap in class_stats.snapshots]
    return records


def accuracy_of(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    """Top-1 accuracy of ``model`` in eval mode on normalised inputs already on its device."""
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            correct += int((model(x[start:start + batch_size]).argmax(1) == y[start:start + batch_size]).sum())
    return correct / len(x)
