"""Train-step benchmark: the semi-supervised step against a supervised step on as many images.

Three ways of training one iteration, each on its own copy of the same initial model (Adam, lr 1e-3):

* ``supervised``: Ignite's stock ``create_supervised_trainer(model, optimizer, nn.CrossEntropyLoss())``
  on labeled batches of ``B_l + B_u`` images;
* ``semi``: the same stock trainer with ``loss = PseudoLabelLoss(alpha=...)`` and
  ``prepare_batch=loss.prepare_batch`` (``loss.attach(trainer)`` too), run on
  ``SemiSupervisedLoader(labeled, unlabeled=...)``: ``B_l`` labeled + ``B_u`` unlabeled images in one
  forward pass, online pseudo-labels (Lee 2013) weighted by a constant alpha > 0, so the unlabeled
  half is used every iteration;
* ``tutorial``: the seed tutorial's hand-written step (method 1): a labeled forward, an unlabeled
  forward, the argmax of the detached unlabeled outputs as pseudo-labels,
  ``CE(labeled) + alpha * CE(unlabeled, pseudo-labels)``, backward, step, and its train-accuracy
  bookkeeping (``.item()`` every iteration).

All batches are built in memory beforehand, on the device (a pool of 8 distinct batches, reused), so
that data loading does not take part. After ``--warmup`` untimed iterations, each repeat times
``--iterations`` iterations of every method (the order alternates between repeats), with a device
synchronisation at the end on CUDA; the medians over ``--repeats`` are reported. The figure of
merit is the time per iteration of ``semi`` divided by that of ``supervised``: project target <= 1.05.
On CUDA the peak ``torch.cuda.max_memory_allocated`` of each method is reported too.

``--amp`` trains under bf16 autocast: ``create_supervised_trainer(amp_mode="amp")`` (Ignite's
``"amp"`` mode autocasts with device type ``"cuda"`` and torch's default CUDA autocast dtype, which
this script sets to bfloat16 while it runs; no gradient scaler) and ``torch.autocast`` in the
tutorial's step. It is CUDA-only: on CPU the script says so and measures fp32.

``--fixmatch`` measures a FixMatch iteration instead (``benchmarks/fixmatch_step.py``): ``B`` labeled
+ ``mu * B`` unlabeled real digits, loading and the weak and strong views included, one forward and
backward pass over labeled + weak + strong rows, with per-image views (``WeakStrongViews`` in the
``DataLoader``) and with batched views (``DeviceBatches`` + ``PseudoLabelLoss(views=BatchViews(...))``),
against the model alone on the same rows in memory; and the views of one unlabeled batch alone, both
ways. Targets: batched iteration / model alone <= 1.15, per-image views / batched views >= 5.

Usage:
    # the defaults (CPU or GPU, whichever is there): 64 labeled + 64 unlabeled images per iteration
    python -m benchmarks.bench_train_step

    # on a GPU, larger batches, bf16 autocast
    python -m benchmarks.bench_train_step --device cuda --labeled-batch 128 --unlabeled-batch 384 --amp

    # a FixMatch iteration, B 64 + mu*B 192, per-image vs batched views (kornia), on a shared CPU
    python -m benchmarks.bench_train_step --fixmatch --threads 1 --iterations 1 --repeats 21 --warmup 2

    # quick check
    python -m benchmarks.bench_train_step --iterations 5 --repeats 2 --warmup 2

    # the fixed per-iteration cost, where the model is cheap (many short repeats resist noise)
    python -m benchmarks.bench_train_step --model tiny --iterations 50 --repeats 11 --threads 1

On a CPU shared with other work add ``--threads 1`` (see ``bench_mining.py``), and prefer many short
repeats (``--iterations 2 --repeats 21``) to a few long ones: the median then ignores the slow spells.

Output: a table on stdout and ``benchmarks/results/bench_train_step_<device type>[_amp].json`` (or
``--out``): per method the per-repeat and median seconds per iteration, images/s and peak memory,
the ratios to ``supervised``, and the environment (versions, device name, threads, git commit).
"""

from __future__ import annotations

import argparse
import copy
import functools
from pathlib import Path
from typing import Any, Callable

import torch
from ignite.engine import create_supervised_trainer
from torch import nn

from benchmarks import common
from benchmarks.fixmatch_step import measure_fixmatch
from ignite_pseudolabel import PseudoLabelLoss, SemiSupervisedLoader
from ignite_pseudolabel.view_options import STRENGTHS

TARGET_RATIO = 1.05
POOL = common.POOL
METHODS = ("supervised", "semi", "tutorial")


def build_batches(args: Any, device: torch.device, shape: tuple[int, ...]) -> dict[str, list]:
    """Pre-built batches on the device: ``iterations`` long lists that reuse a pool of distinct ones."""
    g = torch.Generator().manual_seed(args.seed)

    def images(n: int) -> torch.Tensor:
        return torch.randn(n, *shape, generator=g).to(device)

    def labels(n: int) -> torch.Tensor:
        return torch.randint(0, 10, (n,), generator=g).to(device)

    total = args.labeled_batch + args.unlabeled_batch
    pools: dict[str, list[Any]] = {
        "labeled": [(images(args.labeled_batch), labels(args.labeled_batch)) for _ in range(POOL)],
        "unlabeled": [images(args.unlabeled_batch) for _ in range(POOL)],
        "supervised": [(images(total), labels(total)) for _ in range(POOL)],
    }
    n = max(args.iterations, args.warmup)
    return {name: [pool[i % POOL] for i in range(n)] for name, pool in pools.items()}


def tutorial_step_runner(model: nn.Module, optimizer: torch.optim.Optimizer, alpha: float, amp: bool,
                         device: torch.device) -> Callable[[list, list], None]:
    """The seed tutorial's training loop for online pseudo-labels (method 1), as written there."""
    criterion = nn.CrossEntropyLoss()

    def run(labeled: list, unlabeled: list) -> None:
        model.train()
        correct, total = 0, 0
        for traindata, pseudodata in zip(labeled, unlabeled):
            inputs, labels = traindata[0].to(device), traindata[1].to(device)
            pinputs = pseudodata.to(device)
            optimizer.zero_grad()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                outputs = model(inputs)
                if alpha > 0:
                    poutputs = model(pinputs)
                    _, plabels = torch.max(poutputs.detach(), 1)
                    loss = criterion(outputs, labels) + alpha * criterion(poutputs, plabels)
                else:
                    loss = criterion(outputs, labels)
            loss.backward()
            optimizer.step()
            _, predicted = torch.max(outputs.detach(), 1)
            total += labels.size(0)
            correct += (predicted == labels).sum().item()

    return run


def build_runners(args: Any, device: torch.device, amp: bool, base: nn.Module,
                  shape: tuple[int, ...] = (1, 28, 28)) -> dict[str, Callable[[int], None]]:
    """``method -> run(k)``: trains ``k`` iterations with that method, on inputs of ``shape``."""
    amp_mode = "amp" if amp else None
    batches = build_batches(args, device, shape)
    runners: dict[str, Callable[[int], None]] = {}

    model = copy.deepcopy(base).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    supervised = create_supervised_trainer(model, optimizer, nn.CrossEntropyLoss(), device=device, amp_mode=amp_mode)
    runners["supervised"] = lambda k: common.run_engine(supervised, batches["supervised"][:k])

    model = copy.deepcopy(base).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss = PseudoLabelLoss(threshold=args.threshold, alpha=args.alpha)
    semi = create_supervised_trainer(model, optimizer, loss, device=device, amp_mode=amp_mode,
                                     prepare_batch=loss.prepare_batch)
    loss.attach(semi)

    def run_semi(k: int) -> None:
        common.run_engine(semi, SemiSupervisedLoader(batches["labeled"][:k], unlabeled=batches["unlabeled"][:k]))

    runners["semi"] = run_semi

    model = copy.deepcopy(base).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    tutorial = tutorial_step_runner(model, optimizer, args.alpha, amp, device)
    runners["tutorial"] = lambda k: tutorial(batches["labeled"][:k], batches["unlabeled"][:k])
    return runners


def measure(args: Any, device: torch.device, amp: bool, base: nn.Module | None = None,
            shape: tuple[int, ...] = (1, 28, 28), label: str | None = None) -> dict[str, Any]:
    """Times the three methods; ``base`` (default ``--model``) is copied for each, inputs have ``shape``."""
    common.seed_everything(args.seed)
    if base is None:
        base = common.make_model(args.model)
    label = label or args.model
    runners = build_runners(args, device, amp, base, shape)
    images = args.labeled_batch + args.unlabeled_batch
    with common.bf16_autocast_default(amp):
        for run in runners.values():  # warm-up: first-call allocations, kernel selection, optimizer state
            run(args.warmup)
        seconds: dict[str, list[float]] = {m: [] for m in METHODS}
        peak: dict[str, int] = {}
        for r in range(args.repeats):
            order = METHODS if r % 2 == 0 else METHODS[::-1]
            for name in order:
                t = common.timed_with_peak(functools.partial(runners[name], args.iterations), device, peak, name)
                seconds[name].append(t / args.iterations)
                print(f"  repeat {r + 1}/{args.repeats} {name:10s}: {1000 * t / args.iterations:9.2f} ms/iteration",
                      flush=True)
    result: dict[str, Any] = {"methods": {}}
    sup = common.median(seconds["supervised"])
    for name in METHODS:
        med = common.median(seconds[name])
        result["methods"][name] = {
            "seconds_per_iteration": seconds[name],
            "median_seconds_per_iteration": med,
            "images_per_s": images / med,
            "ratio_to_supervised": med / sup,
            "ratio_to_supervised_fastest": min(seconds[name]) / min(seconds["supervised"]),
            "cuda_max_memory_allocated_bytes": peak.get(name),
        }
    result["ratio"] = result["methods"]["semi"]["ratio_to_supervised"]
    result["target"] = TARGET_RATIO
    result["meets_target"] = result["ratio"] <= TARGET_RATIO
    rows = []
    for name in METHODS:
        m = result["methods"][name]
        rows.append({"method": name, "ms/iteration": 1000 * m["median_seconds_per_iteration"],
                     "images/s": m["images_per_s"], "x supervised": m["ratio_to_supervised"],
                     "x supervised (fastest)": m["ratio_to_supervised_fastest"],
                     "peak MiB": None if m["cuda_max_memory_allocated_bytes"] is None
                     else m["cuda_max_memory_allocated_bytes"] / 2**20,
                     "all ms": " ".join(f"{1000 * s:.1f}" for s in m["seconds_per_iteration"])})
    columns = ["method", "ms/iteration", "images/s", "x supervised", "x supervised (fastest)", "all ms"]
    if device.type == "cuda":
        columns.insert(5, "peak MiB")
    common.print_table(rows, columns, title=f"train step, {label}, {args.labeled_batch} labeled + "
                                            f"{args.unlabeled_batch} unlabeled images (supervised: {images}), "
                                            f"{'bf16 autocast' if amp else 'fp32'}, {device}")
    print(f"semi / supervised = {result['ratio']:.4f} (target <= {TARGET_RATIO}: "
          f"{'met' if result['meets_target'] else 'NOT met'})")
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = common.argument_parser(__doc__)
    parser.add_argument("--labeled-batch", type=int, default=64, help="B_l: labeled images per iteration")
    parser.add_argument("--unlabeled-batch", type=int, default=64, help="B_u: unlabeled images per iteration")
    parser.add_argument("--iterations", type=int, default=30, help="timed iterations per repeat and method")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (median reported)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed iterations of each method first")
    parser.add_argument("--model", choices=common.MODELS, default="net", help="net: the tutorial's CNN")
    parser.add_argument("--alpha", type=float, default=3.0, help="constant weight of the pseudo term (> 0)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="confidence threshold of the online pseudo-labels (None: use all, as Lee 2013)")
    parser.add_argument("--fixmatch", action="store_true",
                        help="measure a FixMatch iteration instead (B labeled + mu*B unlabeled, weak and strong "
                             "views per image vs batched, against the model alone on the same rows)")
    parser.add_argument("--mu", type=int, default=3, help="--fixmatch: unlabeled batch = mu * labeled batch")
    parser.add_argument("--strength", choices=STRENGTHS, default="fixmatch",
                        help="--fixmatch: strength of the strong view (weak_strong_transforms / BatchViews)")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA only)")
    common.add_run_arguments(parser, "benchmarks/results/bench_train_step_<device>[_amp].json")
    args = parser.parse_args(argv)
    if args.alpha <= 0:
        parser.error("--alpha should be > 0 so that the unlabeled half is used")
    common.require_positive(parser, "batch sizes, iterations, repeats and warm-up", args.labeled_batch,
                            args.unlabeled_batch, args.iterations, args.repeats, args.warmup)
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    device, report = common.start_report("bench_train_step", args)
    amp = args.amp
    if amp and device.type != "cuda":
        message = ("--amp skipped: bf16 autocast through create_supervised_trainer(amp_mode='amp') is CUDA-only; "
                   "measuring fp32 on CPU")
        print(message)
        report["amp_skipped"] = message
        amp = False
    report["precision"] = "bf16 autocast" if amp else "fp32"
    measure_fn = measure_fixmatch if args.fixmatch else measure
    t, report["result"] = common.timed(lambda: measure_fn(args, device, amp), device)
    report["wall_seconds"] = t
    name = f"bench_train_step{'_fixmatch' if args.fixmatch else ''}_{device.type}{'_amp' if amp else ''}"
    out = Path(args.out) if args.out else common.default_out(name)
    common.write_json(out, report)
    print(f"\nwritten: {out}")
    return report


if __name__ == "__main__":
    main()
