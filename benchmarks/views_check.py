"""Are the batched views the per-image ones? The three data paths of ``accuracy.py --views``, scored by one model.

Accuracy runs of a recipe vary by a point or more between seeds, so comparing two ways of making
the views by training needs many runs. This check is cheaper and much less noisy: it trains one
model supervised for ``--pretrain-steps`` steps, freezes it, and feeds it the training batches of
each data path, exactly as ``loss.prepare_batch`` builds them for the trainer:

* ``per-image``: a ``DataLoader`` over :class:`~ignite_pseudolabel.WeakStrongViews` (torchvision,
  one image at a time);
* ``batch``: :class:`~ignite_pseudolabel.device_data.DeviceBatches` of raw ``uint8`` images and
  ``PseudoLabelLoss(views=BatchViews(..., backend="kornia"))``;
* ``batch-torchvision``: the same data path with ``BatchViews``' torchvision backend (the per-image
  transforms, applied in ``prepare_batch``). It draws exactly what the per-image path draws (the same
  shuffles, the same random parameters), so its figures are the per-image ones: a check of the batched
  data path itself.

For every path it reports, over ``--batches`` batches of ``--seeds`` seeds, what FixMatch's loss
sees: the model's accuracy on the weak and the strong views (against the held-back labels), how
often their predictions agree, the share of pseudo-labels above ``--tau`` (mask rate) and their
accuracy, and the confidence on both views, each with its standard error. Equal figures (within a
few standard errors) mean the recipe receives the same training signal from both paths.

With ``--operation-images N`` it also compares kornia's RandAugment operations with torchvision's one by
one, paired: each of N unlabeled images gets one random magnitude bin and sign per operation, and the
same operation at the same magnitude is applied by ``BatchViews``' kornia backend and by torchvision's
own ``RandAugment`` code. It reports the share of pixels that differ (at all, and by more than one grey
level) and the frozen model's accuracy on both outputs, with their paired difference: where the training runs
cannot tell a difference of a few tenths of a point from chance, this finds one operation that differs.

Usage:
    python -m benchmarks.views_check --dataset fashion-mnist --data-root /usr/share/datasets/fashion-mnist \\
        --per-class 100 --threads 1 --operation-images 8000
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

import ignite_pseudolabel as ipl
from benchmarks import common
from benchmarks.accuracy_parts import batch_views_for, transforms_for
from examples.mnist import DATASETS, STATS, Images, Net, load_data
from ignite_pseudolabel.augment import MAX_MAGNITUDE as MAX_BIN
from ignite_pseudolabel.device_data import DeviceBatches
from ignite_pseudolabel.view_options import STRENGTHS

PATHS = ("per-image", "batch", "batch-torchvision")
FIGURES = ("weak_accuracy", "strong_accuracy", "agreement", "mask_rate", "pseudo_label_accuracy", "weak_confidence",
           "strong_confidence")


def pretrain(data: dict[str, Any], args: Any, device: torch.device) -> nn.Module:
    """The scoring model: the tutorial's Net trained supervised on the weakly augmented labeled images."""
    torch.manual_seed(args.seed)
    model = Net().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(Images(data["x_l"], data["y_l"], data["weak"]), batch_size=args.batch_size, shuffle=True)
    step = 0
    while step < args.pretrain_steps:
        for x, y in loader:
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x.to(device)), y.to(device)).backward()
            optimizer.step()
            step += 1
            if step == args.pretrain_steps:
                break
    return model.eval()


def batches(path: str, data: dict[str, Any], args: Any, seed: int, device: torch.device) -> Any:
    """The loss (for its ``prepare_batch``) and the training batches of one data path."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    unlabeled_batch = args.mu * args.batch_size
    views = batch_views_for(args.dataset, args.strength, path)  # None for the per-image path
    if path == "per-image":
        unlabeled: Any = DataLoader(ipl.WeakStrongViews(data["x_u"].unsqueeze(1), data["weak"], data["strong"]),
                                    batch_size=unlabeled_batch, shuffle=True, generator=generator, drop_last=True)
    else:
        unlabeled = DeviceBatches(data["x_u"].unsqueeze(1).to(device), batch_size=unlabeled_batch, drop_last=True,
                                  return_index=True, generator=generator)
    labeled = DataLoader(Images(data["x_l"], data["y_l"], data["weak"]), batch_size=args.batch_size, shuffle=True,
                         generator=generator, drop_last=True)
    loss = ipl.PseudoLabelLoss(args.tau, alpha=1.0, views=views)
    return loss, ipl.SemiSupervisedLoader(labeled, unlabeled=unlabeled)


def _epochs(loader: Any) -> Any:
    """The loader's batches, epoch after epoch (an epoch is one pass over the labeled batches)."""
    while True:
        yield from loader


@torch.no_grad()
def score(model: nn.Module, path: str, data: dict[str, Any], args: Any, seed: int,
          device: torch.device) -> dict[str, list[float]]:
    """The figures of every batch of one path and seed."""
    loss, loader = batches(path, data, args, seed, device)
    stream = _epochs(loader)
    targets = data["y_u"].to(device)
    rows = []
    for _ in range(args.batches):
        inputs, target = loss.prepare_batch(next(stream), device=device)
        logits = model(inputs)[args.batch_size:]
        weak, strong = logits.softmax(1).chunk(2)
        truth = targets[target.sample_index.to(device)]
        confidence, pseudo = weak.max(1)
        mask = (confidence >= args.tau).float()
        correct = (pseudo == truth).float()
        rows.append(torch.stack([
            correct.mean(),  # weak_accuracy
            (strong.argmax(1) == truth).float().mean(),  # strong_accuracy
            (strong.argmax(1) == pseudo).float().mean(),  # agreement
            mask.mean(),  # mask_rate
            (correct * mask).sum() / mask.sum(),  # pseudo_label_accuracy (NaN without pseudo-labels)
            confidence.mean(),  # weak_confidence
            strong.max(1).values.mean(),  # strong_confidence
        ]))
    columns = torch.stack(rows).cpu().T.tolist()  # one transfer for the whole check
    return dict(zip(FIGURES, columns))


#: torchvision's names of the RandAugment operations of ``ignite_pseudolabel.randaugment``
TORCHVISION_NAMES = {"identity": "Identity", "shear_x": "ShearX", "shear_y": "ShearY", "translate_x": "TranslateX",
                     "translate_y": "TranslateY", "rotate": "Rotate", "brightness": "Brightness", "color": "Color",
                     "contrast": "Contrast", "sharpness": "Sharpness", "posterize": "Posterize",
                     "solarize": "Solarize", "autocontrast": "AutoContrast", "equalize": "Equalize"}


OPERATION_FIGURES = ("pixels_differing_pct", "pixels_differing_by_2_pct", "kornia_accuracy", "torchvision_accuracy",
                     "accuracy_difference", "accuracy_difference_se")


@torch.no_grad()
def compare_operations(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, stats: tuple[float, float],
                       seed: int, device: torch.device) -> list[dict[str, Any]]:
    """Operation by operation, kornia's output and torchvision's on the same ``uint8`` images ``(N, 1, H, W)``
    at the same random magnitudes and signs: pixel differences and the frozen model's accuracy on both.

    torchvision's side is its ``RandAugment``'s own code for one operation (``_AUGMENTATION_SPACE`` and
    ``_apply_image_or_video_transform``, private in torchvision 0.2x), so that the reference is exactly
    what the per-image path runs.
    """
    from torchvision.transforms import v2

    from ignite_pseudolabel.batch_views import _apply_operations
    from ignite_pseudolabel.randaugment import OPERATIONS, TORCHVISION_SPACES, binned_values

    reference = v2.RandAugment()
    images, targets = images.to(device), targets.to(device)
    generator = torch.Generator().manual_seed(seed)
    n, _, height, width = images.shape
    mean, std = stats
    rows = []
    for k, name in enumerate(OPERATIONS):
        bins = torch.randint(MAX_BIN + 1, (n,), generator=generator)
        signs = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
        op = torch.full((n,), k, device=device)
        values = binned_values(op, (bins / MAX_BIN).to(device), signs.to(device), TORCHVISION_SPACES["randaugment"],
                               height, width)
        ours = _apply_operations(images / 255, op, values)
        magnitudes_fn, signed = reference._AUGMENTATION_SPACE[TORCHVISION_NAMES[name]]
        magnitudes = magnitudes_fn(MAX_BIN + 1, height, width)
        theirs = []
        for image, level, sign in zip(images, bins.tolist(), signs.tolist()):
            magnitude = 0.0 if magnitudes is None else float(magnitudes[level]) * (sign if signed else 1.0)
            theirs.append(reference._apply_image_or_video_transform(
                image, TORCHVISION_NAMES[name], magnitude, interpolation=reference.interpolation, fill=reference._fill))
        theirs_float = (torch.stack(theirs) / 255).to(device)
        grey_levels = ((ours - theirs_float) * 255).abs().round()
        correct = [torch.cat([(model((chunk - mean) / std).argmax(1) == y) for chunk, y in
                              zip(batch.split(1000), targets.split(1000))]).float() for batch in (ours, theirs_float)]
        difference = correct[0] - correct[1]
        figures = torch.stack([(grey_levels > 0).float().mean(), (grey_levels > 1).float().mean(), correct[0].mean(),
                               correct[1].mean(), difference.mean(), difference.std() / n**0.5]) * 100
        rows.append({"operation": name, **dict(zip(OPERATION_FIGURES, figures.tolist()))})  # one transfer
    return rows


def summarise(figures: dict[str, list[float]]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for name, values in figures.items():
        values = [v for v in values if v == v]  # a batch with no pseudo-label has no pseudo-label accuracy
        row[name] = statistics.mean(values) if values else float("nan")
        row[f"{name}_se"] = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else float("nan")
    return row


def paired_differences(figures: dict[str, list[float]], reference: dict[str, list[float]]) -> dict[str, list[float]]:
    """Batch by batch, ``figures - reference`` (NaN where either is NaN: no pseudo-label in the batch)."""
    return {name: [a - b for a, b in zip(figures[name], reference[name], strict=True)] for name in FIGURES}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = common.argument_parser(__doc__)
    parser.add_argument("--dataset", choices=DATASETS, default="mnist5k")
    parser.add_argument("--data-root", default="data", help="torchvision root, or a folder with the four raw files")
    parser.add_argument("--per-class", type=int, default=100, help="labeled images per class")
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS), help="data paths to compare")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2], help="seeds of the batches' randomness")
    parser.add_argument("--batches", type=int, default=30, help="batches scored per path and seed")
    parser.add_argument("--pretrain-steps", type=int, default=200, help="supervised steps of the scoring model")
    parser.add_argument("--batch-size", type=int, default=32, help="labeled batch size B")
    parser.add_argument("--mu", type=int, default=3, help="unlabeled batch size = mu * B")
    parser.add_argument("--tau", type=float, default=0.95, help="confidence threshold of the pseudo-labels")
    parser.add_argument("--strength", choices=STRENGTHS, default="fixmatch")
    parser.add_argument("--operation-images", type=int, default=0,
                        help="unlabeled images of the operation-by-operation comparison (0: none; needs kornia)")
    common.add_run_arguments(parser, "benchmarks/results/views_check_<dataset>.json")
    args = parser.parse_args(argv)
    common.require_positive(parser, "--per-class, --batches, --pretrain-steps, --batch-size and --mu",
                            args.per_class, args.batches, args.pretrain_steps, args.batch_size, args.mu)
    if args.operation_images < 0:
        parser.error(f"--operation-images should be >= 0 (0: no operation-by-operation comparison), "
                     f"but given {args.operation_images}")
    device, report = common.start_report("views_check", args)
    out = Path(args.out) if args.out else common.default_out(f"views_check_{args.dataset}")
    train_x, train_y, _, _ = load_data(args.dataset, args.data_root, out.parent / "data")  # as accuracy.py caches
    split = ipl.class_balanced_split(train_y, args.per_class, seed=args.seed)
    _, weak, strong = transforms_for(args.dataset, args.strength)
    data = {"x_l": train_x[split.labeled], "y_l": train_y[split.labeled], "x_u": train_x[split.unlabeled],
            "y_u": train_y[split.unlabeled], "weak": weak, "strong": strong}
    model = pretrain(data, args, device)
    rows, per_path = [], {}
    for path in args.paths:
        figures: dict[str, list[float]] = {name: [] for name in FIGURES}
        for seed in args.seeds:
            for name, values in score(model, path, data, args, seed, device).items():
                figures[name].extend(values)
        per_path[path] = figures
        rows.append({"path": path, **summarise(figures)})
    # Every path draws the same shuffles, so batch i of every path holds the same images: differences taken
    # batch by batch against the first path measure the views alone, without the sampling noise of the images.
    reference = args.paths[0]
    differences = [{"path": f"{path} - {reference}",
                    **summarise(paired_differences(per_path[path], per_path[reference]))} for path in args.paths[1:]]
    for row, difference in zip(rows[1:], differences):
        row["paired_difference"] = difference
    report["result"] = rows
    count = args.batches * len(args.seeds)
    common.print_table(rows, ["path", *FIGURES], title=f"{args.dataset}: figures of one frozen model on the batches "
                                                        f"of each path (mean over {count} batches; standard errors in "
                                                        "the JSON)")
    if differences:
        common.print_table(differences, ["path", *FIGURES], title=f"differences on the same images, batch by batch "
                                                                  f"(mean over {count} batches; standard errors in "
                                                                  "the JSON)")
    if args.operation_images > 0:
        count = min(args.operation_images, len(data["x_u"]))
        operations = compare_operations(model, data["x_u"][:count].unsqueeze(1), data["y_u"][:count],
                                        STATS[args.dataset], args.seed, device)
        report["operations"] = operations
        common.print_table(operations, list(operations[0]), title=f"each operation at the same random magnitudes on "
                                                                  f"the same {count} images: kornia minus torchvision")
    common.write_json(out, report)
    print(f"\nwritten: {out}")
    return report


if __name__ == "__main__":
    main()
