"""Segmentation step benchmark: what the per-pixel pseudo-label work adds to the same forward and backward passes.

Two ways of training one iteration of semi-supervised segmentation, each on its own copy of the same
initial model (the example's fully convolutional network, Adam, lr 1e-3) and of the same teacher:

* ``passes``: the forward and backward passes of the dense recipe and nothing else: a stock
  ``create_supervised_trainer`` whose ``prepare_batch`` runs the teacher on the weak views (no
  gradient; its logits are discarded) and concatenates the labeled images and the strong views,
  and whose loss is ``nn.CrossEntropyLoss(ignore_index=255)`` against fixed masks for all rows;
* ``dense``: the recipe on the same stock trainer: ``PseudoLabelLoss(threshold, teacher=...,
  supervised_loss=CrossEntropyLoss(ignore_index=255))`` with
  :class:`~ignite_pseudolabel.dense.DensePrepareBatch` (per-pixel valid masks, CutMix of the strong
  views, of the teacher's logits, of the valid and held-back masks; per-pixel softmax, threshold,
  masked cross-entropy averaged over the valid pixels, mask rate and pseudo-label accuracy).
  ``--policy freematch`` uses per-pixel FreeMatch thresholds instead of the fixed one.

The figure of merit is ``dense`` / ``passes`` time per iteration: project target <= 1.10. Batches
(``B_l`` labeled + ``B_u`` unlabeled images of ``--size`` pixels a side, with masks, valid masks
whose borders are padding, held-back maps) are built in memory on the device beforehand (a pool of 8,
reused), so that data loading takes no part. After ``--warmup`` untimed iterations, each repeat times
``--iterations`` iterations of both methods (alternating which goes first); medians over
``--repeats`` are reported, with the per-repeat values.

Usage:
    python -m benchmarks.bench_segmentation_step --threads 1
    python -m benchmarks.bench_segmentation_step --size 128 --width 32 --device cuda
    python -m benchmarks.bench_segmentation_step --iterations 2 --repeats 2 --warmup 1  # quick check

Output: a table on stdout and ``benchmarks/results/bench_segmentation_step_<device type>.json`` (or
``--out``).
"""

from __future__ import annotations

import argparse
import copy
import functools
from pathlib import Path
from typing import Any, Callable

import torch
from ignite.engine import Engine, create_supervised_trainer
from torch import nn

from benchmarks import common
from examples.segmentation_pseudo_label import FCN, IGNORE, NUM_CLASSES
from ignite_pseudolabel.batch import SemiSupervisedBatch
from ignite_pseudolabel.dense import DensePrepareBatch, DenseViews
from ignite_pseudolabel.losses import PseudoLabelLoss
from ignite_pseudolabel.thresholds import FreeMatchThreshold

TARGET_RATIO = 1.10
METHODS = ("passes", "dense")
POOL = 8


def build_batches(args: Any, device: torch.device) -> list[SemiSupervisedBatch]:
    """A pool of semi-supervised batches of DenseViews on ``device`` (padding: a 4-pixel border on two sides)."""
    size, b_l, b_u = args.size, args.labeled_batch, args.unlabeled_batch
    batches = []
    for _ in range(POOL):
        masks = torch.randint(0, NUM_CLASSES, (b_l, size, size), device=device)
        masks[:, :2] = IGNORE
        weak = torch.rand(b_u, 1, size, size, device=device)
        valid = torch.ones(b_u, size, size, dtype=torch.bool, device=device)
        valid[:, :4] = False
        valid[:, :, :4] = False
        held_back = torch.where(valid, torch.randint(0, NUM_CLASSES, (b_u, size, size), device=device), IGNORE)
        views = DenseViews(weak, (weak * 1.2).clamp(0, 1), valid, torch.arange(b_u, device=device), held_back)
        batches.append(SemiSupervisedBatch((torch.rand(b_l, 1, size, size, device=device), masks), unlabeled=views))
    return batches


def passes_prepare(teacher: nn.Module, unlabeled_masks: torch.Tensor) -> Callable[..., Any]:
    """The recipe's passes without its pseudo-label work: teacher on the weak views, then the
    labeled images and the strong views against fixed masks."""

    def prepare(batch: SemiSupervisedBatch, device: Any = None, non_blocking: bool = False) -> Any:
        (x, y), views = batch.labeled, batch.unlabeled
        with torch.no_grad():
            teacher(views.weak)
        return torch.cat([x, views.strong]), torch.cat([y, unlabeled_masks])

    return prepare


def build_runners(args: Any, device: torch.device, base: nn.Module) -> dict[str, Callable[[int], None]]:
    batches = build_batches(args, device)
    supervised_loss = nn.CrossEntropyLoss(ignore_index=IGNORE)
    engines: dict[str, Engine] = {}
    for name in METHODS:
        model = copy.deepcopy(base)
        teacher = copy.deepcopy(base).eval()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        if name == "passes":
            masks = batches[0].unlabeled.held_back
            engines[name] = create_supervised_trainer(model, optimizer, supervised_loss,
                                                      prepare_batch=passes_prepare(teacher, masks))
        else:
            policy: Any = FreeMatchThreshold(NUM_CLASSES) if args.policy == "freematch" else args.threshold
            loss = PseudoLabelLoss(policy, alpha=1.0, teacher=teacher, supervised_loss=supervised_loss)
            prepare = DensePrepareBatch(loss, cutmix={"p": args.cutmix_p}, ignore_index=IGNORE)
            engines[name] = create_supervised_trainer(model, optimizer, loss, prepare_batch=prepare)
            loss.attach(engines[name])

    def runner(engine: Engine, iterations: int) -> None:
        engine.run([batches[i % POOL] for i in range(iterations)], max_epochs=1)

    return {name: functools.partial(runner, engine) for name, engine in engines.items()}


def measure(args: Any, device: torch.device) -> dict[str, Any]:
    common.seed_everything(args.seed)
    base = FCN(width=args.width).to(device)
    runners = build_runners(args, device, base)
    for run in runners.values():
        run(args.warmup)
    seconds: dict[str, list[float]] = {m: [] for m in METHODS}
    for r in range(args.repeats):
        for name in METHODS if r % 2 == 0 else METHODS[::-1]:
            t, _ = common.timed(functools.partial(runners[name], args.iterations), device)
            seconds[name].append(t / args.iterations)
            print(f"  repeat {r + 1}/{args.repeats} {name:7s}: {1000 * t / args.iterations:9.2f} ms/iteration",
                  flush=True)
    base_median = common.median(seconds["passes"])
    result: dict[str, Any] = {"methods": {}}
    for name in METHODS:
        med = common.median(seconds[name])
        result["methods"][name] = {"seconds_per_iteration": seconds[name], "median_seconds_per_iteration": med,
                                   "ratio_to_passes": med / base_median,
                                   "ratio_to_passes_fastest": min(seconds[name]) / min(seconds["passes"])}
    result["ratio"] = result["methods"]["dense"]["ratio_to_passes"]
    result["target"] = TARGET_RATIO
    result["meets_target"] = result["ratio"] <= TARGET_RATIO
    rows = [{"method": name, "ms/iteration": 1000 * m["median_seconds_per_iteration"],
             "x passes": m["ratio_to_passes"], "x passes (fastest)": m["ratio_to_passes_fastest"],
             "all ms": " ".join(f"{1000 * s:.1f}" for s in m["seconds_per_iteration"])}
            for name, m in result["methods"].items()]
    common.print_table(rows, ["method", "ms/iteration", "x passes", "x passes (fastest)", "all ms"],
                       title=f"segmentation step, FCN width {args.width}, {args.labeled_batch} labeled + "
                             f"{args.unlabeled_batch} unlabeled images of {args.size}x{args.size}, "
                             f"{NUM_CLASSES} classes, {args.policy} threshold, {device}")
    print(f"dense / passes = {result['ratio']:.4f} (target <= {TARGET_RATIO}: "
          f"{'met' if result['meets_target'] else 'NOT met'})")
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = common.argument_parser(__doc__)
    parser.add_argument("--labeled-batch", type=int, default=16, help="B_l: labeled images per iteration")
    parser.add_argument("--unlabeled-batch", type=int, default=32, help="B_u: unlabeled images per iteration")
    parser.add_argument("--size", type=int, default=48, help="image side in pixels")
    parser.add_argument("--width", type=int, default=16, help="channels of the network's first layers")
    parser.add_argument("--policy", choices=("fixed", "freematch"), default="fixed",
                        help="per-pixel threshold: fixed (--threshold) or FreeMatch")
    parser.add_argument("--threshold", type=float, default=0.95, help="fixed per-pixel confidence threshold")
    parser.add_argument("--cutmix-p", type=float, default=0.5, help="probability of CutMix per unlabeled image")
    parser.add_argument("--iterations", type=int, default=10, help="timed iterations per repeat and method")
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats (median reported)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed iterations of each method first")
    common.add_run_arguments(parser, "benchmarks/results/bench_segmentation_step_<device>.json")
    args = parser.parse_args(argv)
    common.require_positive(parser, "batch sizes, iterations, repeats and warm-up", args.labeled_batch,
                            args.unlabeled_batch, args.iterations, args.repeats, args.warmup)
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    device, report = common.start_report("bench_segmentation_step", args)
    report["wall_seconds"], report["result"] = common.timed(lambda: measure(args, device), device)
    out = Path(args.out) if args.out else common.default_out(f"bench_segmentation_step_{device.type}")
    common.write_json(out, report)
    print(f"\nwritten: {out}")
    return report


if __name__ == "__main__":
    main()
